package main

import (
	"context"
	stdx509 "crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"sort"
	"time"

	securityapi "github.com/siderolabs/talos/pkg/machinery/api/security"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protowire"
)

// rawCodec sends and receives message bytes as they are, so that a request
// can be malformed on purpose (truncated protobuf, oversized body).
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("rawCodec: %T", v)
	}

	return *b, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("rawCodec: %T", v)
	}

	*b = append((*b)[:0], data...)

	return nil
}

func (rawCodec) Name() string { return "proto" }

const certificateMethod = "/securityapi.SecurityService/Certificate"

// negCase builds one bad request. It returns the outgoing context (token
// metadata), the method, and the request: a *securityapi.CertificateRequest
// or raw bytes (*[]byte).
type negCase struct {
	help        string
	defaultWant string
	defaultMsg  string
	build       func(env *negEnv) (ctx context.Context, method string, req any, err error)
}

type negEnv struct {
	token string
	cs    csrOpts
	ca    *stdx509.Certificate
	size  int
}

func withToken(tokens ...string) context.Context {
	ctx := context.Background()
	for _, t := range tokens {
		ctx = metadata.AppendToOutgoingContext(ctx, "token", t)
	}

	return ctx
}

func (e *negEnv) freshCSR() ([]byte, error) {
	csr, _, err := e.cs.newCSR(e.ca)
	if err != nil {
		return nil, err
	}

	return csr.X509CertificateRequestPEM, nil
}

func protoCSRField(csr []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), csr)
}

var negCases = map[string]negCase{
	"missing-token": {"no token metadata", "UNAUTHENTICATED", "missing token", func(e *negEnv) (context.Context, string, any, error) {
		csr, err := e.freshCSR()

		return context.Background(), certificateMethod, &securityapi.CertificateRequest{Csr: csr}, err
	}},
	"wrong-token": {"a wrong token", "UNAUTHENTICATED", "invalid token", func(e *negEnv) (context.Context, string, any, error) {
		csr, err := e.freshCSR()

		return withToken("abcdef.0123456789abcdef"), certificateMethod, &securityapi.CertificateRequest{Csr: csr}, err
	}},
	"token-prefix": {"the right token minus its last character", "UNAUTHENTICATED", "invalid token", func(e *negEnv) (context.Context, string, any, error) {
		csr, err := e.freshCSR()

		return withToken(e.token[:len(e.token)-1]), certificateMethod, &securityapi.CertificateRequest{Csr: csr}, err
	}},
	"token-suffix": {"the right token plus one character", "UNAUTHENTICATED", "invalid token", func(e *negEnv) (context.Context, string, any, error) {
		csr, err := e.freshCSR()

		return withToken(e.token + "x"), certificateMethod, &securityapi.CertificateRequest{Csr: csr}, err
	}},
	"empty-token": {"an empty token value", "UNAUTHENTICATED", "", func(e *negEnv) (context.Context, string, any, error) {
		csr, err := e.freshCSR()

		return withToken(""), certificateMethod, &securityapi.CertificateRequest{Csr: csr}, err
	}},
	"dup-token": {"the right token, then a second wrong one", "UNAUTHENTICATED", "", func(e *negEnv) (context.Context, string, any, error) {
		csr, err := e.freshCSR()

		return withToken(e.token, "abcdef.0123456789abcdef"), certificateMethod, &securityapi.CertificateRequest{Csr: csr}, err
	}},
	"dup-token-same": {"the right token twice", "UNAUTHENTICATED", "", func(e *negEnv) (context.Context, string, any, error) {
		csr, err := e.freshCSR()

		return withToken(e.token, e.token), certificateMethod, &securityapi.CertificateRequest{Csr: csr}, err
	}},
	"unknown-method": {"the removed ReadFile RPC", "UNIMPLEMENTED", "", func(e *negEnv) (context.Context, string, any, error) {
		req := []byte{0x0a, 0x04, '/', 'e', 't', 'c'} // ReadFileRequest{path: "/etc"}

		return withToken(e.token), "/securityapi.SecurityService/ReadFile", &req, nil
	}},
	"unknown-service": {"a method of another service", "UNIMPLEMENTED", "", func(e *negEnv) (context.Context, string, any, error) {
		req := []byte{}

		return withToken(e.token), "/grpc.health.v1.Health/Check", &req, nil
	}},
	"unknown-method-notoken": {"an unknown method without a token", "UNIMPLEMENTED|UNAUTHENTICATED", "", func(e *negEnv) (context.Context, string, any, error) {
		req := []byte{}

		return context.Background(), "/securityapi.SecurityService/WriteFile", &req, nil
	}},
	"empty": {"an empty CertificateRequest", "INVALID_ARGUMENT", "failed to decode CSR", func(e *negEnv) (context.Context, string, any, error) {
		return withToken(e.token), certificateMethod, &securityapi.CertificateRequest{}, nil
	}},
	"garbage": {"csr that is not PEM", "INVALID_ARGUMENT", "failed to decode CSR", func(e *negEnv) (context.Context, string, any, error) {
		return withToken(e.token), certificateMethod, &securityapi.CertificateRequest{Csr: []byte("this is not a certificate request\x00\xff")}, nil
	}},
	"cert-pem": {"a CERTIFICATE PEM instead of a CSR", "INVALID_ARGUMENT", "failed to parse CSR", func(e *negEnv) (context.Context, string, any, error) {
		return withToken(e.token), certificateMethod, &securityapi.CertificateRequest{Csr: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.ca.Raw})}, nil
	}},
	"pem-garbage-der": {"a CERTIFICATE REQUEST block holding garbage", "INVALID_ARGUMENT", "failed to parse CSR", func(e *negEnv) (context.Context, string, any, error) {
		return withToken(e.token), certificateMethod, &securityapi.CertificateRequest{Csr: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte("0\x82\x01\x00garbage")})}, nil
	}},
	"bad-sig": {"a CSR whose signature was corrupted", "INVALID_ARGUMENT", "failed to parse CSR", func(e *negEnv) (context.Context, string, any, error) {
		csr, err := e.freshCSR()
		if err != nil {
			return nil, "", nil, err
		}

		block, _ := pem.Decode(csr)
		block.Bytes[len(block.Bytes)-1] ^= 0x01 // the signature BIT STRING ends the DER

		return withToken(e.token), certificateMethod, &securityapi.CertificateRequest{Csr: pem.EncodeToMemory(block)}, nil
	}},
	"truncated": {"a protobuf whose csr field is cut short", "INVALID_ARGUMENT", "", func(e *negEnv) (context.Context, string, any, error) {
		csr, err := e.freshCSR()
		if err != nil {
			return nil, "", nil, err
		}

		body := protoCSRField(csr)
		body = body[:len(body)/2]

		return withToken(e.token), certificateMethod, &body, nil
	}},
	"bad-wiretype": {"a protobuf with field 1 as a varint", "INVALID_ARGUMENT", "", func(e *negEnv) (context.Context, string, any, error) {
		body := protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 42)

		return withToken(e.token), certificateMethod, &body, nil
	}},
	"oversized": {"a request larger than 64 KiB (--size)", "RESOURCE_EXHAUSTED", "", func(e *negEnv) (context.Context, string, any, error) {
		filler := make([]byte, e.size)
		for i := range filler {
			filler[i] = 'A'
		}

		body := protoCSRField(filler)

		return withToken(e.token), certificateMethod, &body, nil
	}},
	"many-sans": {"a valid CSR with --gen-sans extra SANs", "", "", func(e *negEnv) (context.Context, string, any, error) {
		csr, err := e.freshCSR()

		return withToken(e.token), certificateMethod, &securityapi.CertificateRequest{Csr: csr}, err
	}},
}

func runNeg(args []string) error {
	fs := flag.NewFlagSet("neg", flag.ContinueOnError)

	var (
		co         clientOpts
		cs         csrOpts
		expectCode string
		expectMsg  string
	)

	co.register(fs)
	cs.register(fs)
	name := fs.String("case", "", "case name (see --list)")
	list := fs.Bool("list", false, "list the cases")
	fs.StringVar(&expectCode, "expect-code", "", "wanted status (default: the case's); a|b allowed")
	fs.StringVar(&expectMsg, "expect-msg", "", "wanted message substring (default: the case's; '-' for none)")
	size := fs.Int("size", 70*1024, "oversized: bytes of the csr field")
	thenOK := fs.Bool("then-ok", true, "afterwards, a valid worker call must still succeed")

	if err := fs.Parse(args); err != nil {
		return err
	}

	if *list {
		names := make([]string, 0, len(negCases))
		for n := range negCases {
			names = append(names, n)
		}

		sort.Strings(names)

		for _, n := range names {
			fmt.Printf("%-24s %-34s %s\n", n, negCases[n].defaultWant, negCases[n].help)
		}

		return nil
	}

	nc, ok := negCases[*name]
	if !ok {
		return fmt.Errorf("unknown --case %q (see --list)", *name)
	}

	cs.defaults()

	tok, err := co.tokenGetter()()
	if err != nil {
		return err
	}

	if len(tok) < 2 {
		return errors.New("a valid token (--token-file) is needed for the follow-up call")
	}

	_, roots, err := co.rootPool()
	if err != nil {
		return err
	}

	co.noToken = true // every case sets its own metadata

	cc, err := co.dial()
	if err != nil {
		return err
	}
	defer cc.Close() //nolint:errcheck

	env := &negEnv{token: tok, cs: cs, ca: roots[len(roots)-1], size: *size}

	ctx, method, req, err := nc.build(env)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(ctx, co.timeout)
	defer cancel()

	var callErr error

	switch r := req.(type) {
	case *securityapi.CertificateRequest:
		var resp securityapi.CertificateResponse

		callErr = cc.Invoke(ctx, method, r, &resp)
	case *[]byte:
		var resp []byte

		callErr = cc.Invoke(ctx, method, r, &resp, grpc.ForceCodec(rawCodec{}))
	}

	if expectCode == "" {
		expectCode = nc.defaultWant
	}

	switch expectMsg {
	case "":
		expectMsg = nc.defaultMsg
	case "-":
		expectMsg = ""
	}

	if expectCode == "" || expectCode == "OK" {
		if callErr != nil {
			return fmt.Errorf("%s: got %s, want OK", *name, describeStatus(callErr))
		}
	} else {
		want, err := parseCodes(expectCode)
		if err != nil {
			return err
		}

		if callErr == nil {
			return fmt.Errorf("%s: call succeeded, want %s", *name, expectCode)
		}

		if err = expectStatus(callErr, want, expectMsg); err != nil {
			return fmt.Errorf("%s: %w", *name, err)
		}
	}

	fmt.Printf("ok %s: %s\n", *name, describeStatus(callErr))

	if *thenOK {
		if err = followUp(cc, env, co.timeout); err != nil {
			return fmt.Errorf("%s: daemon no longer serves after the case: %w", *name, err)
		}
	}

	return nil
}

// followUp makes one valid call on the same channel (grpc-go reconnects if
// the daemon closed the connection) with a small default CSR.
func followUp(cc *grpc.ClientConn, env *negEnv, timeout time.Duration) error {
	cs := csrOpts{family: "ed25519", cn: "follow-up.example.internal"}
	cs.defaults()

	csr, identity, err := cs.newCSR(env.ca)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(withToken(env.token), timeout)
	defer cancel()

	var resp securityapi.CertificateResponse

	start := time.Now()
	if err = cc.Invoke(ctx, certificateMethod, &securityapi.CertificateRequest{Csr: csr.X509CertificateRequestPEM}, &resp); err != nil {
		return errors.New(describeStatus(err))
	}

	_, err = checkResponse(csr, identity, &resp, expectations{ttl: 24 * time.Hour, backdate: time.Minute, start: start, end: time.Now()})
	if err != nil {
		// A daemon started with another CERT_TTL fails the profile but is
		// still serving; only a missing/unusable answer matters here.
		if _, kerr := parseAllCerts(resp.Crt); kerr != nil {
			return err
		}
	}

	return nil
}
