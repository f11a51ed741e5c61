package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

type loadSummary struct {
	Calls     int64          `json:"calls"`
	OK        int64          `json:"ok"`
	Failed    int64          `json:"failed"`
	Failures  map[string]int `json:"failures"`
	Issuers   map[string]int `json:"issuers"`
	Serving   map[string]int `json:"serving_serials"`
	LastIssue string         `json:"last_issuer"`
	Seconds   float64        `json:"seconds"`
}

// runLoad keeps making worker calls (fresh key + CSR each, full response
// check) over several independent channels until --duration passes or
// --stop-file appears, and counts failures by status.
func runLoad(args []string) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)

	var (
		co clientOpts
		cs csrOpts
	)

	co.register(fs)
	cs.register(fs)
	conns := fs.Int("conns", 4, "independent channels (connections)")
	perConn := fs.Int("per-conn", 1, "concurrent callers per channel")
	duration := fs.Duration("duration", 10*time.Second, "upper bound of the run")
	stopFile := fs.String("stop-file", "", "stop as soon as this file exists")
	maxCalls := fs.Int64("max-calls", 200000, "upper bound on the number of calls")
	maxFail := fs.Int64("max-fail", 0, "exit non-zero if more calls than this failed")
	minOK := fs.Int64("min-ok", 1, "exit non-zero if fewer calls than this succeeded")
	ttl := fs.Duration("ttl", 24*time.Hour, "expected certificate lifetime")
	backdate := fs.Duration("backdate", time.Minute, "expected notBefore backdating")
	pause := fs.Duration("pause", 0, "pause between calls of one caller")
	outFile := fs.String("out", "", "also write the JSON summary here")
	minServing := fs.Int("min-serving", 0, "exit non-zero unless at least this many distinct serving certificates were seen")
	minIssuers := fs.Int("min-issuers", 0, "exit non-zero unless certificates from at least this many CAs were issued")
	lastIssuerFile := fs.String("last-issuer", "", "exit non-zero unless the last issued certificate came from the CA in this PEM file")

	if err := fs.Parse(args); err != nil {
		return err
	}

	cs.defaults()

	_, roots, err := co.rootPool()
	if err != nil {
		return err
	}

	var (
		calls, okCalls, failed atomic.Int64
		failures, issuers, srv counter
		lastIssuer             atomic.Value
		wg                     sync.WaitGroup
	)

	deadline := time.Now().Add(*duration)
	start := time.Now()

	stop := func() bool {
		if time.Now().After(deadline) || calls.Load() >= *maxCalls {
			return true
		}

		if *stopFile != "" {
			if _, err := os.Stat(*stopFile); err == nil {
				return true
			}
		}

		return false
	}

	for c := 0; c < *conns; c++ {
		cc, err := co.dial()
		if err != nil {
			return err
		}
		defer cc.Close() //nolint:errcheck

		for w := 0; w < *perConn; w++ {
			wg.Add(1)

			go func() {
				defer wg.Done()

				for !stop() {
					calls.Add(1)

					csr, identity, err := cs.newCSR(roots[len(roots)-1])
					if err != nil {
						failures.add("csr: " + err.Error())
						failed.Add(1)

						continue
					}

					var p peer.Peer

					exp := expectations{ttl: *ttl, backdate: *backdate, start: time.Now()}
					res := callCertificate(context.Background(), cc, csr.X509CertificateRequestPEM, co.timeout, grpc.Peer(&p))
					exp.end = time.Now()

					if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
						srv.add(ti.State.PeerCertificates[0].SerialNumber.Text(16))
					}

					if res.err != nil {
						failures.add(describeStatus(res.err))
						failed.Add(1)
					} else if sum, err := checkResponse(csr, identity, res.resp, exp); err != nil {
						failures.add("check: " + err.Error())
						failed.Add(1)
					} else {
						okCalls.Add(1)
						issuers.add(sum.Issuer)
						lastIssuer.Store(sum.Issuer)
					}

					if *pause > 0 {
						time.Sleep(*pause)
					}
				}
			}()
		}
	}

	wg.Wait()

	sum := loadSummary{
		Calls:    calls.Load(),
		OK:       okCalls.Load(),
		Failed:   failed.Load(),
		Failures: failures.snapshot(),
		Issuers:  issuers.snapshot(),
		Serving:  srv.snapshot(),
		Seconds:  time.Since(start).Seconds(),
	}

	if v, ok := lastIssuer.Load().(string); ok {
		sum.LastIssue = v
	}

	b, _ := json.Marshal(sum)
	fmt.Println(string(b))

	if *outFile != "" {
		if err := os.WriteFile(*outFile, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}

	if sum.Failed > *maxFail {
		return fmt.Errorf("%d of %d calls failed (max %d): %v", sum.Failed, sum.Calls, *maxFail, sum.Failures)
	}

	if sum.OK < *minOK {
		return fmt.Errorf("only %d calls succeeded (min %d)", sum.OK, *minOK)
	}

	if len(sum.Serving) < *minServing {
		return fmt.Errorf("saw %d serving certificate(s), want at least %d", len(sum.Serving), *minServing)
	}

	if len(sum.Issuers) < *minIssuers {
		return fmt.Errorf("certificates from %d CA(s), want at least %d", len(sum.Issuers), *minIssuers)
	}

	if *lastIssuerFile != "" {
		certs, err := readCertsFiles([]string{*lastIssuerFile})
		if err != nil {
			return err
		}

		if want := hex.EncodeToString(certs[len(certs)-1].SubjectKeyId); sum.LastIssue != want {
			return fmt.Errorf("last certificate issued by %s, want %s", sum.LastIssue, want)
		}
	}

	return nil
}
