package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"
)

// paceRecord is one call of `pace`, written as a JSON line as soon as it ends.
type paceRecord struct {
	Start int64   `json:"start_ms"` // Unix milliseconds when the dial began
	MS    float64 `json:"ms"`       // dial + TLS + call, milliseconds
	OK    bool    `json:"ok"`
	Err   string  `json:"err,omitempty"`
}

// runPace is the legitimate worker beside an attack: about once per
// --interval it does exactly what a worker does for a certificate (new
// channel, so a new TCP + TLS connection, fresh key and CSR, one call,
// response checked, channel closed) and appends one JSON line per call to
// --out, until --stop-file appears or --duration passes. Calls never overlap:
// a slow call delays the next one.
func runPace(args []string) error {
	fs := flag.NewFlagSet("pace", flag.ContinueOnError)

	var (
		co clientOpts
		cs csrOpts
	)

	co.register(fs)
	cs.register(fs)
	interval := fs.Duration("interval", time.Second, "start a call this often")
	duration := fs.Duration("duration", 10*time.Minute, "upper bound of the run")
	stopFile := fs.String("stop-file", "", "stop as soon as this file exists")
	out := fs.String("out", "", "append one JSON line per call here (required)")

	if err := fs.Parse(args); err != nil {
		return err
	}

	if *out == "" {
		return fmt.Errorf("--out is required")
	}

	cs.defaults()

	_, roots, err := co.rootPool()
	if err != nil {
		return err
	}

	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close() //nolint:errcheck

	end := time.Now().Add(*duration)

	for next := time.Now(); time.Now().Before(end); {
		if *stopFile != "" {
			if _, err := os.Stat(*stopFile); err == nil {
				return nil
			}
		}

		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}

		next = next.Add(*interval)

		csr, identity, err := cs.newCSR(roots[len(roots)-1])
		if err != nil {
			return err
		}

		rec := paceRecord{Start: time.Now().UnixMilli()}
		t0 := time.Now()
		exp := expectations{ttl: 24 * time.Hour, backdate: time.Minute, start: t0}

		cc, err := co.dial()
		if err != nil {
			return err
		}

		res := callCertificate(context.Background(), cc, csr.X509CertificateRequestPEM, co.timeout)
		exp.end = time.Now()
		rec.MS = float64(time.Since(t0).Microseconds()) / 1000
		cc.Close() //nolint:errcheck

		if res.err != nil {
			rec.Err = describeStatus(res.err)
		} else if _, err := checkResponse(csr, identity, res.resp, exp); err != nil {
			rec.Err = "check: " + err.Error()
		} else {
			rec.OK = true
		}

		b, _ := json.Marshal(rec)
		if _, err := f.Write(append(b, '\n')); err != nil {
			return err
		}
	}

	return nil
}
