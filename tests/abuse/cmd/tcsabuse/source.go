package main

import (
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"time"
)

// The attacker's source addresses: the legitimate client dials from
// 127.0.0.1, the attacker from elsewhere in 127.0.0.0/8, as a hostile host
// on the network would. --srcs N spreads the attack over N addresses
// (127.77.x.y) to reach a global cap past any per-source one; without it
// every connection comes from --src (default 127.0.0.2).
var (
	sources []net.IP
	nextSrc atomic.Uint64
)

// sourceFlags strips "--src IP" and "--srcs N" from args (any subcommand).
func sourceFlags(args []string) ([]string, error) {
	var rest []string
	src, n := "127.0.0.2", 0
	for i := 0; i < len(args); i++ {
		a := args[i]
		if (a == "--src" || a == "-src" || a == "--srcs" || a == "-srcs") && i+1 < len(args) {
			v := args[i+1]
			i++
			if a == "--src" || a == "-src" {
				src = v
				continue
			}
			k, err := strconv.Atoi(v)
			if err != nil || k < 1 || k > 65000 {
				return nil, fmt.Errorf("--srcs %q: want 1..65000", v)
			}
			n = k
			continue
		}
		rest = append(rest, a)
	}
	if n == 0 {
		ip := net.ParseIP(src)
		if ip == nil || !ip.IsLoopback() {
			return nil, fmt.Errorf("--src %q: a loopback address is required", src)
		}
		sources = []net.IP{ip}
		return rest, nil
	}
	for i := 1; i <= n; i++ {
		sources = append(sources, net.IPv4(127, 77, byte(i>>8), byte(i&0xff)))
	}
	return rest, nil
}

// dialer returns a dialer bound to the next source address.
func dialer(timeout time.Duration) *net.Dialer {
	ip := sources[int(nextSrc.Add(1))%len(sources)]
	return &net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: ip}}
}
