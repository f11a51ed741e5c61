// Command tcsinterop is the Talos-side half of the interop suite: it builds
// PKI the way `talosctl gen secrets` does and talks to the daemon exactly the
// way a Talos worker's machined does (siderolabs/crypto CSRs, the generated
// securityapi client, the talosroundrobin resolver, grpc-go with ALPN
// enforcement on), then checks the answer the way apid would use it.
//
// Subcommands (run `tcsinterop SUBCOMMAND -h` for flags):
//
//	pki       write a Talos-style CA, token and serving certificate
//	csr       write a CSR (for the independent Python clients)
//	worker    one Certificate call as a worker makes it, response checked
//	neg       one negative case (bad token, bad CSR, ...), status checked
//	load      keep calling over several connections, count failures by code
//	pace      one worker call (new connection) per interval, one JSON line each
//	probe     TLS-dial the daemon and report (or wait for) its serving cert
//	noalpn    TLS clients without h2 in ALPN must never get a successful call
//	freeport  print a free TCP port on 127.0.0.1
package main

import (
	"fmt"
	"os"
	"strings"
)

type command struct {
	name string
	run  func(args []string) error
	help string
}

var commands = []command{
	{"pki", runPKI, "write a Talos-style CA, token and serving certificate"},
	{"csr", runCSR, "write a CSR and its key"},
	{"worker", runWorker, "one Certificate call as a Talos worker makes it"},
	{"neg", runNeg, "one negative case, status code checked"},
	{"load", runLoad, "keep calling for a while, count failures by code"},
	{"pace", runPace, "one worker call per interval on a new connection, logged"},
	{"probe", runProbe, "report or wait for the serving certificate"},
	{"noalpn", runNoALPN, "clients without h2 ALPN get no successful call"},
	{"freeport", runFreePort, "print a free TCP port on 127.0.0.1"},
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: tcsinterop SUBCOMMAND [flags]")

	for _, c := range commands {
		fmt.Fprintf(os.Stderr, "  %-9s %s\n", c.name, c.help)
	}
}

func main() {
	// The whole point of this tool is to behave like a modern grpc-go
	// client: refuse to run with the ALPN escape hatch switched off.
	if v := os.Getenv("GRPC_ENFORCE_ALPN_ENABLED"); v != "" && !strings.EqualFold(v, "true") {
		fmt.Fprintln(os.Stderr, "tcsinterop: GRPC_ENFORCE_ALPN_ENABLED must not be disabled for this test tool")
		os.Exit(2)
	}

	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}

	for _, c := range commands {
		if c.name == os.Args[1] {
			if err := c.run(os.Args[2:]); err != nil {
				fmt.Fprintf(os.Stderr, "tcsinterop %s: FAIL: %v\n", c.name, err)
				os.Exit(1)
			}

			return
		}
	}

	usage()
	os.Exit(2)
}
