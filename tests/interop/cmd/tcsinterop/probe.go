package main

import (
	"bytes"
	"context"
	"crypto/tls"
	stdx509 "crypto/x509"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/protobuf/encoding/protowire"
)

// tlsDial makes one TLS connection to the first endpoint with the worker's
// verification rules (roots, ServerName = the dialed IP).
func tlsDial(co *clientOpts, nextProtos []string, verify bool) (*tls.Conn, error) {
	var pool *stdx509.CertPool

	if verify {
		p, _, err := co.rootPool()
		if err != nil {
			return nil, err
		}

		pool = p
	}

	ep := strings.Split(co.endpoint, ",")[0]
	d := &net.Dialer{Timeout: co.timeout}

	return tls.DialWithDialer(d, "tcp", ep, &tls.Config{
		RootCAs:            pool,
		ServerName:         firstHost(co.endpoint),
		NextProtos:         nextProtos,
		InsecureSkipVerify: !verify, //nolint:gosec // only to read what a non-verifying client would see
		MinVersion:         tls.VersionTLS12,
	})
}

// runProbe reports the serving certificate of a fresh connection, or waits
// until a fresh connection presents the certificate in --expect-cert.
func runProbe(args []string) error {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)

	var co clientOpts

	co.register(fs)
	expectCert := fs.String("expect-cert", "", "wait until new connections present this certificate (PEM file)")
	wait := fs.Duration("wait", 0, "how long to wait for --expect-cert")
	tls12 := fs.Bool("tls12", false, "force TLS 1.2")

	if err := fs.Parse(args); err != nil {
		return err
	}

	var want *stdx509.Certificate

	if *expectCert != "" {
		certs, err := readCertsFiles([]string{*expectCert})
		if err != nil {
			return err
		}

		want = certs[0]
	}

	deadline := time.Now().Add(*wait)

	for {
		conn, err := tlsDialVersion(&co, *tls12)

		var got *stdx509.Certificate

		if err == nil {
			st := conn.ConnectionState()
			got = st.PeerCertificates[0]

			if st.NegotiatedProtocol != "h2" {
				err = fmt.Errorf("ALPN %q negotiated, want h2", st.NegotiatedProtocol)
			} else if want == nil || bytes.Equal(got.Raw, want.Raw) {
				fmt.Printf("ok probe: serial=%s key=%s tls=%s alpn=%s\n", got.SerialNumber.Text(16), keyFamily(got.PublicKey),
					tls.VersionName(st.Version), st.NegotiatedProtocol)
				conn.Close() //nolint:errcheck

				return nil
			}

			conn.Close() //nolint:errcheck
		}

		if time.Now().After(deadline) {
			if err != nil {
				return err
			}

			return fmt.Errorf("serving certificate serial %s, want %s", got.SerialNumber.Text(16), want.SerialNumber.Text(16))
		}

		time.Sleep(200 * time.Millisecond)
	}
}

func tlsDialVersion(co *clientOpts, tls12 bool) (*tls.Conn, error) {
	if !tls12 {
		return tlsDial(co, []string{"h2"}, true)
	}

	pool, _, err := co.rootPool()
	if err != nil {
		return nil, err
	}

	d := &net.Dialer{Timeout: co.timeout}

	return tls.DialWithDialer(d, "tcp", strings.Split(co.endpoint, ",")[0], &tls.Config{
		RootCAs: pool, ServerName: firstHost(co.endpoint), NextProtos: []string{"h2"},
		MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12,
	})
}

// runNoALPN checks that TLS clients which do not offer h2 never get a
// successful Certificate call: either the handshake fails, or it completes
// without ALPN and the gRPC request sent anyway is refused.
func runNoALPN(args []string) error {
	fs := flag.NewFlagSet("noalpn", flag.ContinueOnError)

	var co clientOpts

	co.register(fs)
	offer := fs.String("offer", "", "ALPN protocols to offer, comma-separated (empty: no ALPN extension)")

	if err := fs.Parse(args); err != nil {
		return err
	}

	tok, err := co.tokenGetter()()
	if err != nil {
		return err
	}

	var protos []string
	if *offer != "" {
		protos = strings.Split(*offer, ",")
	}

	conn, err := tlsDial(&co, protos, true)
	if err != nil {
		var opErr *net.OpError
		if errors.As(err, &opErr) && opErr.Op == "dial" {
			return fmt.Errorf("cannot reach the daemon at all: %w", err)
		}

		if strings.Contains(err.Error(), "unadvertised ALPN") {
			return fmt.Errorf("server selected a protocol the client did not offer: %v", err)
		}

		fmt.Printf("ok noalpn offer=%q: handshake refused (%v)\n", *offer, err)

		return nil
	}
	defer conn.Close() //nolint:errcheck

	if np := conn.ConnectionState().NegotiatedProtocol; np != "" {
		return fmt.Errorf("negotiated %q although the client offered %q", np, *offer)
	}

	// The handshake passed without ALPN: try a gRPC call over HTTP/2 anyway.
	tr := &http2.Transport{}

	h2c, err := tr.NewClientConn(conn)
	if err != nil {
		fmt.Printf("ok noalpn offer=%q: TLS without ALPN, HTTP/2 refused (%v)\n", *offer, err)

		return nil
	}

	body := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte("x"))
	frame := make([]byte, 5, 5+len(body))
	binary.BigEndian.PutUint32(frame[1:], uint32(len(body)))
	frame = append(frame, body...)

	ctx, cancel := context.WithTimeout(context.Background(), co.timeout)
	defer cancel()

	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+strings.Split(co.endpoint, ",")[0]+certificateMethod, bytes.NewReader(frame))
	req.Header.Set("content-type", "application/grpc")
	req.Header.Set("te", "trailers")
	req.Header.Set("token", tok)

	resp, err := h2c.RoundTrip(req)
	if err != nil {
		fmt.Printf("ok noalpn offer=%q: TLS without ALPN, request failed (%v)\n", *offer, err)

		return nil
	}
	defer resp.Body.Close() //nolint:errcheck

	_, _ = io.Copy(io.Discard, resp.Body)

	grpcStatus := resp.Trailer.Get("grpc-status")
	if grpcStatus == "" {
		grpcStatus = resp.Header.Get("grpc-status")
	}

	if resp.StatusCode == http.StatusOK && grpcStatus == "0" {
		return errors.New("a client without ALPN h2 got a successful call")
	}

	fmt.Printf("ok noalpn offer=%q: TLS without ALPN, HTTP %d grpc-status %q\n", *offer, resp.StatusCode, grpcStatus)

	return nil
}

func runFreePort([]string) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}

	port := l.Addr().(*net.TCPAddr).Port
	l.Close() //nolint:errcheck

	_, err = fmt.Fprintln(os.Stdout, port)

	return err
}
