package main

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2conn is a raw HTTP/2 client connection over TLS: frames are written by
// hand (so that they can be wrong on purpose) and a reader goroutine keeps
// the connection alive (SETTINGS and PING acknowledged, flow-control windows
// refilled) and reports the end of each stream.
type h2conn struct {
	c      *tls.Conn
	fr     *http2.Framer
	wmu    sync.Mutex
	nextID uint32 // next client stream (under wmu)

	enc    *hpack.Encoder
	encBuf bytes.Buffer

	mu      sync.Mutex
	waiters map[uint32]chan string // stream -> grpc-status (or "RST", "GOAWAY")
	closed  chan struct{}
	err     error
}

// dialTLS opens a TLS connection offering only h2, as grpc-go does, and
// trusting anything: the attacks are about the door, not the certificate.
func dialTLS(addr string, timeout time.Duration) (*tls.Conn, error) {
	c, err := tls.DialWithDialer(dialer(timeout), "tcp", addr, &tls.Config{
		InsecureSkipVerify: true, //nolint:gosec // attack tool: any serving certificate will do
		NextProtos:         []string{"h2"},
	})
	if err != nil {
		return nil, err
	}
	if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
		c.Close() //nolint:errcheck
		return nil, fmt.Errorf("ALPN selected %q, not h2", p)
	}
	return c, nil
}

// dialH2 completes TLS and the HTTP/2 preface, and starts the reader.
func dialH2(addr string, timeout time.Duration) (*h2conn, error) {
	c, err := dialTLS(addr, timeout)
	if err != nil {
		return nil, err
	}
	h := &h2conn{c: c, waiters: map[uint32]chan string{}, closed: make(chan struct{})}
	h.fr = http2.NewFramer(c, c)
	h.fr.ReadMetaHeaders = hpack.NewDecoder(65536, nil)
	h.fr.MaxHeaderListSize = 1 << 20
	h.enc = hpack.NewEncoder(&h.encBuf)
	if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
		c.Close() //nolint:errcheck
		return nil, err
	}
	if err := h.fr.WriteSettings(); err != nil {
		c.Close() //nolint:errcheck
		return nil, err
	}
	go h.read()
	return h, nil
}

func (h *h2conn) Close() { h.c.Close() } //nolint:errcheck

// read drains the server's frames until the connection ends.
func (h *h2conn) read() {
	defer close(h.closed)
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			h.mu.Lock()
			h.err = err
			for id, ch := range h.waiters {
				ch <- "CLOSED"
				delete(h.waiters, id)
			}
			h.mu.Unlock()
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				h.write(func() error { return h.fr.WriteSettingsAck() })
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				h.write(func() error { return h.fr.WritePing(true, f.Data) })
			}
		case *http2.DataFrame:
			if n := len(f.Data()); n > 0 {
				h.write(func() error { return h.fr.WriteWindowUpdate(0, uint32(n)) })
			}
			if f.StreamEnded() {
				h.done(f.StreamID, "NO-TRAILERS")
			}
		case *http2.MetaHeadersFrame:
			if f.StreamEnded() {
				st := "HTTP " + f.PseudoValue("status")
				for _, hf := range f.Fields {
					if hf.Name == "grpc-status" {
						st = hf.Value
					}
				}
				h.done(f.StreamID, st)
			}
		case *http2.RSTStreamFrame:
			h.done(f.StreamID, "RST")
		case *http2.GoAwayFrame:
			// Keep reading: the server closes when it is done.
		}
	}
}

func (h *h2conn) done(id uint32, st string) {
	h.mu.Lock()
	if ch, ok := h.waiters[id]; ok {
		ch <- st
		delete(h.waiters, id)
	}
	h.mu.Unlock()
}

func (h *h2conn) write(fn func() error) error {
	h.wmu.Lock()
	defer h.wmu.Unlock()
	return fn()
}

// headerBlock HPACK-encodes a request's header fields (caller holds wmu).
func (h *h2conn) headerBlock(fields [][2]string) []byte {
	h.encBuf.Reset()
	for _, f := range fields {
		h.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}) //nolint:errcheck
	}
	return append([]byte(nil), h.encBuf.Bytes()...)
}

// grpcHeaders is what grpc-go sends for a Certificate call.
func grpcHeaders(authority, token string) [][2]string {
	f := [][2]string{
		{":method", "POST"},
		{":scheme", "https"},
		{":path", "/securityapi.SecurityService/Certificate"},
		{":authority", authority},
		{"content-type", "application/grpc"},
		{"te", "trailers"},
		{"user-agent", "tcsabuse"},
	}
	if token != "" {
		f = append(f, [2]string{"token", token})
	}
	return f
}

// certificateMessage frames CertificateRequest{csr} as a gRPC message.
func certificateMessage(csr []byte) []byte {
	var pb []byte
	pb = append(pb, 0x0a) // field 1, bytes
	n := len(csr)
	for n >= 0x80 {
		pb = append(pb, byte(n)|0x80)
		n >>= 7
	}
	pb = append(pb, byte(n))
	pb = append(pb, csr...)
	msg := []byte{0, byte(len(pb) >> 24), byte(len(pb) >> 16), byte(len(pb) >> 8), byte(len(pb))}
	return append(msg, pb...)
}

// call sends one unary call on the next stream and waits for its end. Any
// number of goroutines may call at once (streams open in increasing order).
func (h *h2conn) call(fields [][2]string, body []byte, timeout time.Duration) (string, error) {
	ch := make(chan string, 1)
	err := h.write(func() error {
		if h.nextID == 0 {
			h.nextID = 1
		}
		id := h.nextID
		h.nextID += 2
		h.mu.Lock()
		if h.err != nil {
			h.mu.Unlock()
			return h.err
		}
		h.waiters[id] = ch
		h.mu.Unlock()
		if err := h.fr.WriteHeaders(http2.HeadersFrameParam{
			StreamID: id, BlockFragment: h.headerBlock(fields), EndHeaders: true,
		}); err != nil {
			return err
		}
		return h.fr.WriteData(id, true, body)
	})
	if err != nil {
		return "", err
	}
	select {
	case st := <-ch:
		return st, nil
	case <-time.After(timeout):
		return "", errors.New("timed out")
	}
}
