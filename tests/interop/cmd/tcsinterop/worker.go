package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// parseCodes parses "UNAUTHENTICATED" or "Unauthenticated" (a |-separated
// list is allowed: "INVALID_ARGUMENT|RESOURCE_EXHAUSTED").
func parseCodes(s string) ([]codes.Code, error) {
	var out []codes.Code

	for _, part := range strings.Split(s, "|") {
		name := strings.ToUpper(strings.TrimSpace(part))
		found := false

		for c := codes.OK; c <= codes.Unauthenticated; c++ {
			if strings.ReplaceAll(strings.ToUpper(c.String()), "_", "") == strings.ReplaceAll(name, "_", "") {
				out = append(out, c)
				found = true

				break
			}
		}

		if !found {
			return nil, fmt.Errorf("unknown status code %q", part)
		}
	}

	return out, nil
}

// expectStatus checks err against the wanted codes and message substring.
func expectStatus(err error, want []codes.Code, msgSubstr string) error {
	st, _ := status.FromError(err)

	ok := false

	for _, c := range want {
		if st.Code() == c {
			ok = true
		}
	}

	if !ok {
		return fmt.Errorf("got %s, want %v", describeStatus(err), want)
	}

	if msgSubstr != "" && !strings.Contains(st.Message(), msgSubstr) {
		return fmt.Errorf("got %s, want message containing %q", describeStatus(err), msgSubstr)
	}

	return nil
}

func runWorker(args []string) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)

	var (
		co         clientOpts
		cs         csrOpts
		expectCA   listFlag
		expIssuer  string
		expectCode string
		expectMsg  string
	)

	co.register(fs)
	cs.register(fs)
	fs.Var(&expectCA, "expect-ca", "PEM file(s) whose certificates must be exactly the response's ca, in order (repeatable)")
	fs.StringVar(&expIssuer, "expect-issuer", "", "PEM file of the CA that must have signed crt")
	trustdCA := fs.String("trustd-ca", "", "directory holding ca.crt and ca.key: compare crt with what siderolabs/crypto (trustd) issues for the same CSR")
	ttl := fs.Duration("ttl", 24*time.Hour, "expected certificate lifetime (daemon CERT_TTL)")
	backdate := fs.Duration("backdate", time.Minute, "expected notBefore backdating (daemon CERT_BACKDATE)")
	fs.StringVar(&expectCode, "expect-code", "", "expect this gRPC status instead of success (e.g. UNAUTHENTICATED)")
	fs.StringVar(&expectMsg, "expect-msg", "", "with --expect-code: substring of the status message")
	attempts := fs.Int("attempts", 1, "attempts, each with a fresh key and CSR like a worker (1 = no retry)")
	label := fs.String("label", "", "label printed with the result")

	if err := fs.Parse(args); err != nil {
		return err
	}

	cs.defaults()

	_, roots, err := co.rootPool()
	if err != nil {
		return err
	}

	exp := expectations{ttl: *ttl, backdate: *backdate}

	if len(expectCA) > 0 {
		if exp.caList, err = readCertsFiles(expectCA); err != nil {
			return err
		}
	}

	if expIssuer != "" {
		certs, err := readCertsFiles([]string{expIssuer})
		if err != nil {
			return err
		}

		exp.issuer = certs[len(certs)-1]
	}

	if *trustdCA != "" {
		if exp.trustd, err = loadCA(*trustdCA); err != nil {
			return fmt.Errorf("--trustd-ca: %w", err)
		}
	}

	cc, err := co.dial()
	if err != nil {
		return err
	}
	defer cc.Close() //nolint:errcheck

	var lastErr error

	for attempt := 1; attempt <= *attempts; attempt++ {
		if attempt > 1 {
			time.Sleep(time.Duration(attempt-1) * time.Second)
		}

		// Talos v1.11+ follows the last accepted CA (machine.ca is appended last).
		csr, identity, err := cs.newCSR(roots[len(roots)-1])
		if err != nil {
			return err
		}

		exp.start = time.Now()
		res := callCertificate(context.Background(), cc, csr.X509CertificateRequestPEM, co.timeout)
		exp.end = time.Now()

		if expectCode != "" {
			want, err := parseCodes(expectCode)
			if err != nil {
				return err
			}

			if res.err == nil {
				return fmt.Errorf("%s: call succeeded, want %s", *label, expectCode)
			}

			if err = expectStatus(res.err, want, expectMsg); err != nil {
				return fmt.Errorf("%s: %w", *label, err)
			}

			fmt.Printf("ok %s: %s\n", *label, describeStatus(res.err))

			return nil
		}

		if res.err != nil {
			lastErr = fmt.Errorf("attempt %d: %s", attempt, describeStatus(res.err))

			continue
		}

		sum, err := checkResponse(csr, identity, res.resp, exp)
		if err != nil {
			return fmt.Errorf("%s: csr=%s: %w", *label, keyFamilyOfCSR(csr), err)
		}

		b, _ := json.Marshal(sum)
		fmt.Printf("ok %s: csr=%s %s\n", *label, keyFamilyOfCSR(csr), b)

		return nil
	}

	if lastErr == nil {
		lastErr = errors.New("no attempt made")
	}

	return fmt.Errorf("%s: %w", *label, lastErr)
}
