package main

import (
	stdx509 "crypto/x509"
	"crypto/x509/pkix"
	"strings"
	"testing"
	"time"

	"github.com/siderolabs/crypto/x509"
	securityapi "github.com/siderolabs/talos/pkg/machinery/api/security"
)

// The checker must reject what Talos's reference trustd would never issue;
// these tests sign with siderolabs/crypto directly to prove it does.

func issue(t *testing.T, opts ...x509.Option) (*x509.CertificateSigningRequest, *x509.PEMEncodedCertificateAndKey, *securityapi.CertificateResponse) {
	t.Helper()

	ca, err := newTalosCA("ed25519")
	if err != nil {
		t.Fatal(err)
	}

	cs := csrOpts{family: "ed25519", cn: "w.example", orgs: listFlag{"os:admin"}}
	cs.defaults()

	csr, identity, err := cs.newCSR(ca.Crt)
	if err != nil {
		t.Fatal(err)
	}

	crt, err := x509.NewCertificateFromCSRBytes(ca.CrtPEM, ca.KeyPEM, csr.X509CertificateRequestPEM, opts...)
	if err != nil {
		t.Fatal(err)
	}

	return csr, identity, &securityapi.CertificateResponse{Ca: ca.CrtPEM, Crt: crt.X509CertificatePEM}
}

func exp() expectations {
	now := time.Now()

	return expectations{ttl: 24 * time.Hour, backdate: time.Minute, start: now, end: now}
}

var (
	serverOnly = x509.ExtKeyUsage([]stdx509.ExtKeyUsage{stdx509.ExtKeyUsageServerAuth})
	dsOnly     = x509.KeyUsage(stdx509.KeyUsageDigitalSignature)
	stripO     = x509.OverrideSubject(func(n *pkix.Name) { n.Organization = nil })
)

func TestReferenceProfilePasses(t *testing.T) {
	csr, id, resp := issue(t, serverOnly, dsOnly, stripO)
	if _, err := checkResponse(csr, id, resp, exp()); err != nil {
		t.Fatalf("trustd's own profile rejected: %v", err)
	}
}

func TestOrganizationKeptFails(t *testing.T) {
	csr, id, resp := issue(t, serverOnly, dsOnly)

	_, err := checkResponse(csr, id, resp, exp())
	if err == nil || !strings.Contains(err.Error(), "O=") {
		t.Fatalf("want an O= failure, got %v", err)
	}
}

func TestClientAuthFails(t *testing.T) {
	csr, id, resp := issue(t, dsOnly, stripO) // library default EKU: serverAuth+clientAuth

	_, err := checkResponse(csr, id, resp, exp())
	if err == nil || !strings.Contains(err.Error(), "clientAuth") {
		t.Fatalf("want a clientAuth failure, got %v", err)
	}
}

func TestWrongLifetimeFails(t *testing.T) {
	csr, id, resp := issue(t, serverOnly, dsOnly, stripO, x509.NotAfter(time.Now().Add(365*24*time.Hour)))

	_, err := checkResponse(csr, id, resp, exp())
	if err == nil || !strings.Contains(err.Error(), "notAfter") {
		t.Fatalf("want a notAfter failure, got %v", err)
	}
}

func TestKeyMismatchFails(t *testing.T) {
	csr, _, resp := issue(t, serverOnly, dsOnly, stripO)
	_, other, _ := issue(t, serverOnly, dsOnly, stripO)

	if _, err := checkResponse(csr, other, resp, exp()); err == nil {
		t.Fatal("a certificate for another key was accepted")
	}
}

func TestExtraCertInCrtFails(t *testing.T) {
	csr, id, resp := issue(t, serverOnly, dsOnly, stripO)
	resp.Crt = append(resp.Crt, resp.Ca...)

	_, err := checkResponse(csr, id, resp, exp())
	if err == nil || !strings.Contains(err.Error(), "exactly one") {
		t.Fatalf("want an exactly-one failure, got %v", err)
	}
}

func TestTokenFormat(t *testing.T) {
	tok, err := genToken()
	if err != nil {
		t.Fatal(err)
	}

	if len(tok) != 23 || tok[6] != '.' || strings.Trim(strings.ReplaceAll(tok, ".", ""), "abcdefghijklmnopqrstuvwxyz0123456789") != "" {
		t.Fatalf("token %q is not [a-z0-9]{6}.[a-z0-9]{16}", tok)
	}
}
