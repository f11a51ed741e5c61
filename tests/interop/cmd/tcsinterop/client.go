package main

import (
	"bytes"
	"context"
	"crypto/tls"
	stdx509 "crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/siderolabs/crypto/x509"
	securityapi "github.com/siderolabs/talos/pkg/machinery/api/security"
	"github.com/siderolabs/talos/pkg/machinery/client/resolver"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// tokenCreds is the worker's per-RPC credential: metadata key "token",
// transport security required (what Talos's basic.TokenCredentials does).
// get is called for every RPC, so a token file can be re-read per call.
type tokenCreds struct {
	get func() (string, error)
}

func (t tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	tok, err := t.get()
	if err != nil {
		return nil, err
	}

	return map[string]string{"token": tok}, nil
}

func (tokenCreds) RequireTransportSecurity() bool { return true }

// clientOpts are the flags shared by every subcommand that talks gRPC.
type clientOpts struct {
	endpoint  string
	caFiles   listFlag
	token     string
	tokenFile string
	noToken   bool
	timeout   time.Duration
}

func (o *clientOpts) register(fs *flag.FlagSet) {
	fs.StringVar(&o.endpoint, "endpoint", "", "daemon address IP:PORT or [IPv6]:PORT (comma-separated list allowed, as a worker's endpoint list)")
	fs.Var(&o.caFiles, "ca", "PEM file(s) of accepted CAs used to verify the serving cert (repeatable)")
	fs.StringVar(&o.token, "token", "", "machine token (prefer --token-file)")
	fs.StringVar(&o.tokenFile, "token-file", "", "file holding the machine token (re-read for every call)")
	fs.BoolVar(&o.noToken, "no-token", false, "send no token at all")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "per-attempt deadline (Talos uses 10s)")
}

func (o *clientOpts) tokenGetter() func() (string, error) {
	if o.tokenFile != "" {
		path := o.tokenFile

		return func() (string, error) {
			b, err := os.ReadFile(path)
			if err != nil {
				return "", err
			}

			return strings.TrimRight(string(b), "\r\n"), nil
		}
	}

	tok := o.token

	return func() (string, error) { return tok, nil }
}

// rootPool builds the worker's RootCAs from its accepted CAs, as Talos's
// basic.NewConnection does (all PEMs concatenated into one pool).
func (o *clientOpts) rootPool() (*stdx509.CertPool, []*stdx509.Certificate, error) {
	if len(o.caFiles) == 0 {
		return nil, nil, errors.New("--ca is required")
	}

	var all []byte

	for _, f := range o.caFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, nil, err
		}

		all = append(all, b...)
	}

	pool := stdx509.NewCertPool()
	if !pool.AppendCertsFromPEM(all) {
		return nil, nil, fmt.Errorf("no certificate in %v", o.caFiles)
	}

	certs, err := parseAllCerts(all)

	return pool, certs, err
}

// dial opens a channel the way a Talos worker does: talosroundrobin target
// (ServerName = the bare IP of each endpoint), TLS with the accepted CAs as
// roots and grpc-go's default ALPN enforcement, the token as per-RPC
// credentials.
func (o *clientOpts) dial() (*grpc.ClientConn, error) {
	if o.endpoint == "" {
		return nil, errors.New("--endpoint is required")
	}

	pool, _, err := o.rootPool()
	if err != nil {
		return nil, err
	}

	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool})),
		grpc.WithSharedWriteBuffer(true),
	}

	if !o.noToken {
		opts = append(opts, grpc.WithPerRPCCredentials(tokenCreds{get: o.tokenGetter()}))
	}

	return grpc.NewClient(resolver.RoundRobinResolverScheme+":///"+o.endpoint, opts...)
}

// csrOpts are the worker's CSR settings.
type csrOpts struct {
	family string // ed25519, ca (v1.11+: follow the last accepted CA), ecdsa, rsa
	cn     string
	ips    listFlag
	dns    listFlag
	orgs   listFlag
	genIPs int
	genDNS int
}

func (c *csrOpts) register(fs *flag.FlagSet) {
	fs.StringVar(&c.family, "csr-family", "ed25519", "ed25519 (Talos <= 1.10), ca (Talos 1.11+: the CA's family), ecdsa, rsa")
	fs.StringVar(&c.cn, "cn", "worker-1.example.internal", "CommonName (Talos: the FQDN)")
	fs.Var(&c.ips, "ip", "IP SAN (repeatable; default 127.0.0.1,10.5.0.2,fd00::2)")
	fs.Var(&c.dns, "dns", "DNS SAN (repeatable; default worker-1,worker-1.example.internal,talos,talos.default)")
	fs.IntVar(&c.genIPs, "gen-ips", 0, "add this many generated IPv4 SANs (10.x.y.z)")
	fs.IntVar(&c.genDNS, "gen-dns", 0, "add this many generated DNS SANs")
	fs.Var(&c.orgs, "org", "Organization to request (a pre-1.3 worker asked for os:impersonator; an attacker for os:admin)")
}

func (c *csrOpts) defaults() {
	if len(c.ips) == 0 {
		c.ips = listFlag{"127.0.0.1", "10.5.0.2", "fd00::2"}
	}

	if len(c.dns) == 0 {
		c.dns = listFlag{"worker-1", "worker-1.example.internal", "talos", "talos.default"}
	}

	for i := range c.genIPs {
		c.ips = append(c.ips, fmt.Sprintf("10.%d.%d.%d", (i>>16)&0xff, (i>>8)&0xff, i&0xff))
	}

	for i := range c.genDNS {
		c.dns = append(c.dns, fmt.Sprintf("n%d.w", i))
	}

	c.genIPs, c.genDNS = 0, 0
}

// newCSR generates a fresh key and CSR with siderolabs/crypto, exactly as
// Talos's APIController.generateWorker does (NewEd25519CSRAndIdentity up to
// v1.10, NewCSRAndIdentityFromCA(last accepted CA) from v1.11).
func (c *csrOpts) newCSR(lastCA *stdx509.Certificate) (*x509.CertificateSigningRequest, *x509.PEMEncodedCertificateAndKey, error) {
	ips, err := parseIPs(c.ips)
	if err != nil {
		return nil, nil, err
	}

	opts := []x509.Option{
		x509.IPAddresses(ips),
		x509.DNSNames(c.dns),
		x509.CommonName(c.cn),
	}

	if len(c.orgs) > 0 {
		opts = append(opts, x509.Organization(c.orgs...))
	}

	switch c.family {
	case "ed25519":
		return x509.NewEd25519CSRAndIdentity(opts...)
	case "ca":
		if lastCA == nil {
			return nil, nil, errors.New("--csr-family ca needs --ca")
		}

		return x509.NewCSRAndIdentityFromCA(lastCA, opts...)
	case "ecdsa":
		return x509.NewECDSACSRAndIdentity(opts...)
	case "rsa":
		return x509.NewRSACSRAndIdentity(opts...)
	default:
		return nil, nil, fmt.Errorf("unknown --csr-family %q", c.family)
	}
}

// callResult is one Certificate attempt.
type callResult struct {
	resp *securityapi.CertificateResponse
	err  error
}

func callCertificate(ctx context.Context, cc *grpc.ClientConn, csrPEM []byte, timeout time.Duration, extra ...grpc.CallOption) callResult {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	resp, err := securityapi.NewSecurityServiceClient(cc).Certificate(ctx, &securityapi.CertificateRequest{Csr: csrPEM}, extra...)

	return callResult{resp: resp, err: err}
}

// describeStatus renders an error as "Code: message".
func describeStatus(err error) string {
	if err == nil {
		return "OK"
	}

	st, _ := status.FromError(err)

	return fmt.Sprintf("%s: %s", st.Code(), st.Message())
}

func parseAllCerts(pemBytes []byte) ([]*stdx509.Certificate, error) {
	var certs []*stdx509.Certificate

	rest := pemBytes

	for {
		var block *pem.Block

		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}

		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("unexpected PEM block %q", block.Type)
		}

		c, err := stdx509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}

		certs = append(certs, c)
	}

	if len(certs) == 0 {
		return nil, errors.New("no certificate")
	}

	return certs, nil
}

// readCertsFiles parses every certificate of every file, in order.
func readCertsFiles(files []string) ([]*stdx509.Certificate, error) {
	var out []*stdx509.Certificate

	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}

		certs, err := parseAllCerts(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}

		out = append(out, certs...)
	}

	return out, nil
}

func sameCertList(a, b []*stdx509.Certificate) bool {
	if len(a) != len(b) {
		return false
	}

	for i := range a {
		if !bytes.Equal(a[i].Raw, b[i].Raw) {
			return false
		}
	}

	return true
}

// firstHost returns the host part of the first endpoint, the worker's
// ServerName for that address.
func firstHost(endpoint string) string {
	ep := strings.Split(endpoint, ",")[0]

	host, _, err := net.SplitHostPort(ep)
	if err != nil {
		return ep
	}

	return host
}

// counter is a concurrency-safe map of counts.
type counter struct {
	mu sync.Mutex
	m  map[string]int
}

func (c *counter) add(k string) {
	c.mu.Lock()
	defer c.mu.Unlock()

	if c.m == nil {
		c.m = map[string]int{}
	}

	c.m[k]++
}

func (c *counter) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()

	out := make(map[string]int, len(c.m))
	for k, v := range c.m {
		out[k] = v
	}

	return out
}
