package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	stdx509 "crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/siderolabs/crypto/x509"
)

// caValidity mirrors Talos's secrets.CAValidityTime (ten years).
const caValidity = 87600 * time.Hour

// newTalosCA creates the machine CA the way Talos's secrets.NewTalosCA does
// (O=talos, ten years, crypto's NewSelfSignedCertificateAuthority), for the
// default Ed25519 family and for the ECDSA (FIPS builds) and RSA families.
func newTalosCA(family string) (*x509.CertificateAuthority, error) {
	now := time.Now()
	opts := []x509.Option{
		x509.Organization("talos"),
		x509.NotAfter(now.Add(caValidity)),
		x509.NotBefore(now),
	}

	switch family {
	case "ed25519":
	case "ecdsa":
		opts = append(opts, x509.ECDSA(true))
	case "rsa":
		opts = append(opts, x509.RSA(true)) // 4096 bits, SHA512WithRSA
	case "ecdsa384":
		return newP384CA(now)
	default:
		return nil, fmt.Errorf("unknown CA family %q (ed25519, ecdsa, ecdsa384, rsa)", family)
	}

	return x509.NewSelfSignedCertificateAuthority(opts...)
}

// newP384CA makes a machine CA like newTalosCA's ECDSA one but on P-384
// (siderolabs/crypto only generates P-256 CA keys; an operator may bring
// their own): the same template, self-signed with ECDSA-SHA384.
func newP384CA(now time.Time) (*x509.CertificateAuthority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, err
	}

	serial, err := x509.NewSerialNumber()
	if err != nil {
		return nil, err
	}

	skid, err := x509.NewSubjectKeyID()
	if err != nil {
		return nil, err
	}

	tmpl := &stdx509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"talos"}},
		SubjectKeyId:          skid,
		SignatureAlgorithm:    stdx509.ECDSAWithSHA384,
		NotBefore:             now,
		NotAfter:              now.Add(caValidity),
		BasicConstraintsValid: true,
		IsCA:                  true,
		KeyUsage:              stdx509.KeyUsageCertSign | stdx509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []stdx509.ExtKeyUsage{stdx509.ExtKeyUsageServerAuth, stdx509.ExtKeyUsageClientAuth},
	}

	der, err := stdx509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}

	keyPEM, err := marshalKeyPEM(key)
	if err != nil {
		return nil, err
	}

	return x509.NewCertificateAuthorityFromCertificateAndKey(&x509.PEMEncodedCertificateAndKey{
		Crt: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		Key: keyPEM,
	})
}

// genToken makes a machine token in Talos's format [a-z0-9]{6}.[a-z0-9]{16}.
func genToken() (string, error) {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

	part := func(n int) (string, error) {
		var b strings.Builder

		for range n {
			i, err := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
			if err != nil {
				return "", err
			}

			b.WriteByte(alphabet[i.Int64()])
		}

		return b.String(), nil
	}

	a, err := part(6)
	if err != nil {
		return "", err
	}

	b, err := part(16)
	if err != nil {
		return "", err
	}

	return a + "." + b, nil
}

// newKey makes a private key of the given family. RSA keys are 4096 bits
// unless bits says otherwise.
func newKey(family string, bits int) (crypto.Signer, error) {
	switch family {
	case "ed25519":
		_, k, err := ed25519.GenerateKey(rand.Reader)

		return k, err
	case "ecdsa":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ecdsa384":
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "rsa":
		if bits == 0 {
			bits = 4096
		}

		return rsa.GenerateKey(rand.Reader, bits)
	default:
		return nil, fmt.Errorf("unknown key family %q", family)
	}
}

// marshalKeyPEM encodes a key in a standard label: PKCS#8 "PRIVATE KEY" for
// Ed25519 (as cert-manager writes it), SEC1 for ECDSA, PKCS#1 for RSA.
func marshalKeyPEM(k crypto.Signer) ([]byte, error) {
	switch key := k.(type) {
	case *ecdsa.PrivateKey:
		der, err := stdx509.MarshalECPrivateKey(key)
		if err != nil {
			return nil, err
		}

		return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
	case *rsa.PrivateKey:
		return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: stdx509.MarshalPKCS1PrivateKey(key)}), nil
	default:
		der, err := stdx509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return nil, err
		}

		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
	}
}

// newServingCert issues a trustd-style serving certificate (Talos's
// TrustdController profile: KU digitalSignature|keyEncipherment, EKU
// serverAuth, 24 h) from ca for a fresh key of the given family.
func newServingCert(ca *x509.CertificateAuthority, family string, ips []net.IP, dns []string, ttl time.Duration) (crtPEM, keyPEM []byte, err error) {
	key, err := newKey(family, 0)
	if err != nil {
		return nil, nil, err
	}

	serial, err := x509.NewSerialNumber()
	if err != nil {
		return nil, nil, err
	}

	now := time.Now()
	tmpl := &stdx509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "talos-csr-signer.test"},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(ttl),
		KeyUsage:     stdx509.KeyUsageDigitalSignature | stdx509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []stdx509.ExtKeyUsage{stdx509.ExtKeyUsageServerAuth},
		IPAddresses:  ips,
		DNSNames:     dns,
	}

	der, err := stdx509.CreateCertificate(rand.Reader, tmpl, ca.Crt, key.Public(), ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("signing serving certificate: %w", err)
	}

	keyPEM, err = marshalKeyPEM(key)
	if err != nil {
		return nil, nil, err
	}

	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// writeFileAtomic writes via a temporary file and rename, so that a daemon
// watching dir never sees a half-written file.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}

	defer os.Remove(tmp.Name()) //nolint:errcheck

	if _, err = tmp.Write(data); err != nil {
		tmp.Close() //nolint:errcheck

		return err
	}

	if err = tmp.Chmod(perm); err != nil {
		tmp.Close() //nolint:errcheck

		return err
	}

	if err = tmp.Close(); err != nil {
		return err
	}

	return os.Rename(tmp.Name(), path)
}

func loadCA(dir string) (*x509.CertificateAuthority, error) {
	pair, err := x509.NewCertificateAndKeyFromFiles(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"))
	if err != nil {
		return nil, err
	}

	return x509.NewCertificateAuthorityFromCertificateAndKey(pair)
}

type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}

	return nil
}

func parseIPs(list []string) ([]net.IP, error) {
	ips := make([]net.IP, 0, len(list))

	for _, s := range list {
		ip := net.ParseIP(s)
		if ip == nil {
			return nil, fmt.Errorf("not an IP address: %q", s)
		}

		ips = append(ips, ip)
	}

	return ips, nil
}

func runPKI(args []string) error {
	fs := flag.NewFlagSet("pki", flag.ContinueOnError)
	family := fs.String("family", "ed25519", "CA key family: ed25519, ecdsa, ecdsa384, rsa")
	out := fs.String("out", "", "output directory (created)")
	servingFamily := fs.String("serving-family", "", "serving key family (default: like Talos's trustd, the CA's family)")
	reuseCA := fs.Bool("reuse-ca", false, "keep ca.crt/ca.key already in --out (issue a new serving cert only)")
	keepToken := fs.Bool("keep-token", false, "keep an existing token file in --out")
	ttl := fs.Duration("serving-ttl", 24*time.Hour, "serving certificate lifetime")

	var servingIPs, servingDNS listFlag

	fs.Var(&servingIPs, "serving-ip", "IP SAN of the serving cert (repeatable, comma-separated; default 127.0.0.1,::1)")
	fs.Var(&servingDNS, "serving-dns", "DNS SAN of the serving cert (repeatable)")

	if err := fs.Parse(args); err != nil {
		return err
	}

	if *out == "" {
		return errors.New("--out is required")
	}

	if len(servingIPs) == 0 {
		servingIPs = listFlag{"127.0.0.1", "::1"}
	}

	ips, err := parseIPs(servingIPs)
	if err != nil {
		return err
	}

	if err = os.MkdirAll(*out, 0o755); err != nil {
		return err
	}

	var ca *x509.CertificateAuthority

	if *reuseCA {
		if ca, err = loadCA(*out); err != nil {
			return fmt.Errorf("--reuse-ca: %w", err)
		}
	} else {
		if ca, err = newTalosCA(*family); err != nil {
			return err
		}

		// CrtPEM/KeyPEM are exactly what Talos stores in machine.ca: for
		// Ed25519 the key carries the non-standard "ED25519 PRIVATE KEY" label.
		if err = writeFileAtomic(filepath.Join(*out, "ca.key"), ca.KeyPEM, 0o600); err != nil {
			return err
		}

		if err = writeFileAtomic(filepath.Join(*out, "ca.crt"), ca.CrtPEM, 0o644); err != nil {
			return err
		}
	}

	tokenPath := filepath.Join(*out, "token")
	if _, statErr := os.Stat(tokenPath); !*keepToken || statErr != nil {
		tok, err := genToken()
		if err != nil {
			return err
		}

		if err = writeFileAtomic(tokenPath, []byte(tok), 0o600); err != nil {
			return err
		}
	}

	sf := *servingFamily
	if sf == "" {
		sf = keyFamily(ca.Crt.PublicKey)
	}

	crtPEM, keyPEM, err := newServingCert(ca, sf, ips, servingDNS, *ttl)
	if err != nil {
		return err
	}

	if err = writeFileAtomic(filepath.Join(*out, "server.key"), keyPEM, 0o600); err != nil {
		return err
	}

	if err = writeFileAtomic(filepath.Join(*out, "server.crt"), crtPEM, 0o644); err != nil {
		return err
	}

	leaf, err := parseFirstCert(crtPEM)
	if err != nil {
		return err
	}

	fmt.Printf("pki: dir=%s ca=%s serving=%s serving_serial=%s\n", *out, keyFamily(ca.Crt.PublicKey), sf, leaf.SerialNumber.Text(16))

	return nil
}

// keyFamily names the family of a public key the way the flags do.
func keyFamily(pub any) string {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return "ed25519"
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P384() {
			return "ecdsa384"
		}

		return "ecdsa"
	case *rsa.PublicKey:
		return "rsa"
	default:
		return fmt.Sprintf("%T", pub)
	}
}

func parseFirstCert(pemBytes []byte) (*stdx509.Certificate, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no CERTIFICATE PEM block")
	}

	return stdx509.ParseCertificate(block.Bytes)
}
