// Command tcsbench is the load generator of `make bench` and of the soak test:
// it calls /securityapi.SecurityService/Certificate the way a Talos worker
// does (TLS verified against the machine CA with the dialed IP as server
// name, ALPN h2, token as metadata) but with CSRs made once up front, so
// that the client spends its CPU on the calls and not on key generation.
//
// Subcommands:
//
//	steady  many concurrent calls over a few long-lived connections
//	storm   one new TLS connection per call, many at once (a fleet rebooting)
//	hold    open N connections, make one call on each, keep them open
//
// Every subcommand prints one JSON object on stdout.
package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

const method = "/securityapi.SecurityService/Certificate"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: tcsbench steady|storm|hold [flags] (-h for flags)")
		os.Exit(2)
	}

	var err error

	switch os.Args[1] {
	case "steady":
		err = runSteady(os.Args[2:])
	case "storm":
		err = runStorm(os.Args[2:])
	case "hold":
		err = runHold(os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q", os.Args[1])
	}

	if err != nil {
		fmt.Fprintln(os.Stderr, "tcsbench:", err)
		os.Exit(1)
	}
}

// rawCodec sends and receives already-encoded protobuf bytes.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(b []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), b...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

var _ encoding.Codec = rawCodec{}

// common holds the flags every subcommand shares.
type common struct {
	endpoint  string
	caFile    string
	tokenFile string
	family    string
	pool      int
	timeout   time.Duration

	tlsConf *tls.Config
	csrs    [][]byte // encoded CertificateRequest messages
	token   atomic.Value
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.endpoint, "endpoint", "", "daemon address IP:PORT")
	fs.StringVar(&c.caFile, "ca", "", "PEM of the CA(s) that sign the serving certificate")
	fs.StringVar(&c.tokenFile, "token-file", "", "file holding the machine token (re-read every second)")
	fs.StringVar(&c.family, "csr-family", "ed25519", "CSR key family: ed25519, ecdsa, rsa (RSA-4096, as Talos 1.11 sends)")
	fs.IntVar(&c.pool, "csrs", 32, "distinct CSRs made up front and used in turn")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "per-call deadline (Talos uses 10s)")
}

func (c *common) setup() error {
	if c.endpoint == "" || c.caFile == "" || c.tokenFile == "" {
		return errors.New("--endpoint, --ca and --token-file are required")
	}

	pemBytes, err := os.ReadFile(c.caFile)
	if err != nil {
		return err
	}

	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pemBytes) {
		return fmt.Errorf("%s: no certificate", c.caFile)
	}

	host, _, err := net.SplitHostPort(c.endpoint)
	if err != nil {
		return err
	}

	c.tlsConf = &tls.Config{RootCAs: roots, ServerName: host, MinVersion: tls.VersionTLS12}

	if err := c.readToken(); err != nil {
		return err
	}

	go func() {
		for range time.Tick(time.Second) {
			_ = c.readToken() //nolint:errcheck // keep the last good token
		}
	}()

	for i := 0; i < c.pool; i++ {
		csr, err := makeCSR(c.family, i)
		if err != nil {
			return err
		}

		c.csrs = append(c.csrs, protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), csr))
	}

	return nil
}

func (c *common) readToken() error {
	b, err := os.ReadFile(c.tokenFile)
	if err != nil {
		return err
	}

	c.token.Store(strings.TrimSpace(string(b)))

	return nil
}

// makeCSR returns a PEM CSR like a worker's: CN, O=os:admin (which the
// signer must strip), a DNS and an IP SAN.
func makeCSR(family string, i int) ([]byte, error) {
	var (
		key crypto.Signer
		err error
	)

	switch family {
	case "ed25519":
		_, key, err = ed25519.GenerateKey(rand.Reader)
	case "ecdsa":
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "rsa":
		key, err = rsa.GenerateKey(rand.Reader, 4096)
	default:
		err = fmt.Errorf("unknown CSR family %q", family)
	}

	if err != nil {
		return nil, err
	}

	tmpl := &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: fmt.Sprintf("worker-%d", i), Organization: []string{"os:admin"}},
		DNSNames:    []string{fmt.Sprintf("worker-%d", i)},
		IPAddresses: []net.IP{net.IPv4(10, 0, byte(i>>8), byte(i))},
	}

	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, err
	}

	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

func (c *common) dial() (*grpc.ClientConn, error) {
	return grpc.NewClient("passthrough:///"+c.endpoint,
		grpc.WithTransportCredentials(credentials.NewTLS(c.tlsConf.Clone())),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
}

// call makes one Certificate call and checks that a certificate came back.
func (c *common) call(cc *grpc.ClientConn, n int) error {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()

	ctx = metadata.AppendToOutgoingContext(ctx, "token", c.token.Load().(string))
	req := c.csrs[n%len(c.csrs)]

	var resp []byte
	if err := cc.Invoke(ctx, method, &req, &resp); err != nil {
		return err
	}

	var crt, ca []byte

	for b := resp; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || typ != protowire.BytesType {
			return errors.New("malformed response")
		}

		b = b[n:]

		v, m := protowire.ConsumeBytes(b)
		if m < 0 {
			return errors.New("malformed response")
		}

		b = b[m:]

		switch num {
		case 1:
			ca = v
		case 2:
			crt = v
		}
	}

	if blk, _ := pem.Decode(crt); blk == nil || blk.Type != "CERTIFICATE" || len(ca) == 0 {
		return errors.New("response without a certificate or CA")
	}

	return nil
}

// stats collects latencies and failures.
type stats struct {
	mu    sync.Mutex
	lat   []time.Duration
	fails map[string]int
}

func (s *stats) add(d time.Duration, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	if err != nil {
		if s.fails == nil {
			s.fails = map[string]int{}
		}

		key := err.Error()
		if st, ok := status.FromError(err); ok {
			key = st.Code().String() + ": " + st.Message()
		}

		if len(key) > 120 {
			key = key[:120]
		}

		s.fails[key]++

		return
	}

	s.lat = append(s.lat, d)
}

type summary struct {
	Mode        string         `json:"mode"`
	Family      string         `json:"csr_family"`
	Conns       int            `json:"conns"`
	Concurrency int            `json:"concurrency"`
	Calls       int            `json:"calls"`
	OK          int            `json:"ok"`
	Failed      int            `json:"failed"`
	Failures    map[string]int `json:"failures,omitempty"`
	Seconds     float64        `json:"seconds"`
	PerSecond   float64        `json:"per_second"`
	P50ms       float64        `json:"p50_ms"`
	P90ms       float64        `json:"p90_ms"`
	P99ms       float64        `json:"p99_ms"`
	MaxMs       float64        `json:"max_ms"`
	ClientCPU   float64        `json:"client_cpu_seconds"`
}

func (s *stats) summary(mode string, secs float64) summary {
	s.mu.Lock()
	defer s.mu.Unlock()

	sort.Slice(s.lat, func(i, j int) bool { return s.lat[i] < s.lat[j] })

	pct := func(p float64) float64 {
		if len(s.lat) == 0 {
			return 0
		}

		i := int(p * float64(len(s.lat)-1))

		return float64(s.lat[i].Microseconds()) / 1000
	}

	failed := 0
	for _, n := range s.fails {
		failed += n
	}

	return summary{
		Mode: mode, Calls: len(s.lat) + failed, OK: len(s.lat), Failed: failed, Failures: s.fails,
		Seconds: secs, PerSecond: float64(len(s.lat)) / secs,
		P50ms: pct(0.50), P90ms: pct(0.90), P99ms: pct(0.99), MaxMs: pct(1),
		ClientCPU: cpuSeconds(),
	}
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}

	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

	return tv(ru.Utime) + tv(ru.Stime)
}

func emit(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}

	fmt.Println(string(b))

	return nil
}

// runSteady keeps `concurrency` callers busy over `conns` connections.
func runSteady(args []string) error {
	fs := flag.NewFlagSet("steady", flag.ContinueOnError)

	var c common

	c.register(fs)
	conns := fs.Int("conns", 4, "long-lived connections")
	conc := fs.Int("concurrency", 64, "concurrent callers, spread over the connections")
	duration := fs.Duration("duration", 10*time.Second, "how long to call")
	rate := fs.Float64("rate", 0, "calls per second in total (0: as fast as possible)")
	stopFile := fs.String("stop-file", "", "stop early when this file exists")

	if err := fs.Parse(args); err != nil {
		return err
	}

	if err := c.setup(); err != nil {
		return err
	}

	ccs := make([]*grpc.ClientConn, *conns)

	for i := range ccs {
		cc, err := c.dial()
		if err != nil {
			return err
		}
		defer cc.Close() //nolint:errcheck

		ccs[i] = cc
	}

	var (
		st   stats
		wg   sync.WaitGroup
		next atomic.Int64
	)

	start := time.Now()
	deadline := start.Add(*duration)

	var tick <-chan time.Time

	if *rate > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / *rate))
		defer t.Stop()

		tick = t.C
	}

	stopped := func() bool {
		if time.Now().After(deadline) {
			return true
		}

		if *stopFile != "" {
			if _, err := os.Stat(*stopFile); err == nil {
				return true
			}
		}

		return false
	}

	for w := 0; w < *conc; w++ {
		wg.Add(1)

		go func(w int) {
			defer wg.Done()

			for !stopped() {
				if tick != nil {
					<-tick
				}

				n := int(next.Add(1))
				t0 := time.Now()
				err := c.call(ccs[w%len(ccs)], n)
				st.add(time.Since(t0), err)
			}
		}(w)
	}

	wg.Wait()

	sum := st.summary("steady", time.Since(start).Seconds())
	sum.Family, sum.Conns, sum.Concurrency = c.family, *conns, *conc

	return emit(sum)
}

// runStorm makes `total` calls, each on a new connection, `parallel` at once.
func runStorm(args []string) error {
	fs := flag.NewFlagSet("storm", flag.ContinueOnError)

	var c common

	c.register(fs)
	total := fs.Int("total", 2000, "connections (one call each)")
	parallel := fs.Int("parallel", 64, "connections being made at once")

	if err := fs.Parse(args); err != nil {
		return err
	}

	if err := c.setup(); err != nil {
		return err
	}

	var (
		st   stats
		wg   sync.WaitGroup
		next atomic.Int64
	)

	start := time.Now()

	for w := 0; w < *parallel; w++ {
		wg.Add(1)

		go func() {
			defer wg.Done()

			for {
				n := int(next.Add(1))
				if n > *total {
					return
				}

				t0 := time.Now()

				cc, err := c.dial()
				if err == nil {
					err = c.call(cc, n)
					cc.Close() //nolint:errcheck
				}

				st.add(time.Since(t0), err)
			}
		}()
	}

	wg.Wait()

	sum := st.summary("storm", time.Since(start).Seconds())
	sum.Family, sum.Conns, sum.Concurrency = c.family, *total, *parallel

	return emit(sum)
}

// runHold opens `conns` connections, makes one call on each, writes
// --ready-file and keeps them open until --stop-file exists, SIGTERM, or
// --duration passes.
func runHold(args []string) error {
	fs := flag.NewFlagSet("hold", flag.ContinueOnError)

	var c common

	c.register(fs)
	conns := fs.Int("conns", 1000, "connections to hold")
	parallel := fs.Int("parallel", 32, "connections being opened at once")
	ready := fs.String("ready-file", "", "written once every connection made its call")
	stopFile := fs.String("stop-file", "", "close everything when this file exists")
	duration := fs.Duration("duration", 2*time.Minute, "upper bound of the hold")

	if err := fs.Parse(args); err != nil {
		return err
	}

	c.pool = min(c.pool, 4)

	if err := c.setup(); err != nil {
		return err
	}

	var (
		st   stats
		wg   sync.WaitGroup
		next atomic.Int64
	)

	ccs := make([]*grpc.ClientConn, *conns)
	start := time.Now()

	for w := 0; w < *parallel; w++ {
		wg.Add(1)

		go func() {
			defer wg.Done()

			for {
				n := int(next.Add(1)) - 1
				if n >= *conns {
					return
				}

				t0 := time.Now()

				cc, err := c.dial()
				if err == nil {
					ccs[n] = cc
					err = c.call(cc, n)
				}

				st.add(time.Since(t0), err)
			}
		}()
	}

	wg.Wait()

	sum := st.summary("hold", time.Since(start).Seconds())
	sum.Family, sum.Conns, sum.Concurrency = c.family, *conns, *parallel

	if *ready != "" {
		if err := os.WriteFile(*ready, []byte("ready\n"), 0o644); err != nil {
			return err
		}
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)

	deadline := time.After(*duration)
	tick := time.NewTicker(100 * time.Millisecond)

	defer tick.Stop()

wait:
	for {
		select {
		case <-sig:
			break wait
		case <-deadline:
			break wait
		case <-tick.C:
			if *stopFile != "" {
				if _, err := os.Stat(*stopFile); err == nil {
					break wait
				}
			}
		}
	}

	for _, cc := range ccs {
		if cc != nil {
			cc.Close() //nolint:errcheck
		}
	}

	return emit(sum)
}
