package main

import (
	"crypto/rand"
	stdx509 "crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
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

// issueFrom signs csr with ca through siderolabs/crypto as trustd does; when
// alg is set, it re-signs the same certificate with that algorithm instead
// (what a signer that ignores the CSR's algorithm would return).
func issueFrom(t *testing.T, ca *x509.CertificateAuthority, csr *x509.CertificateSigningRequest, alg stdx509.SignatureAlgorithm) []byte {
	t.Helper()

	crt, err := x509.NewCertificateFromCSRBytes(ca.CrtPEM, ca.KeyPEM, csr.X509CertificateRequestPEM, serverOnly, dsOnly, stripO)
	if err != nil {
		t.Fatal(err)
	}

	if alg == stdx509.UnknownSignatureAlgorithm {
		return crt.X509CertificatePEM
	}

	tmpl := *crt.X509Certificate
	tmpl.SignatureAlgorithm = alg

	der, err := stdx509.CreateCertificate(rand.Reader, &tmpl, ca.Crt, crt.X509Certificate.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}

	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func trustdExp(ca *x509.CertificateAuthority) expectations {
	now := time.Now()

	return expectations{ttl: 24 * time.Hour, start: now, end: now, trustd: ca}
}

// trustd's own certificate passes the exact comparison for every CA family
// and each release's CSR shape; one signed with another hash does not.
func TestTrustdComparison(t *testing.T) {
	for _, fam := range []string{"ed25519", "ecdsa", "ecdsa384", "rsa"} {
		ca, err := newTalosCA(fam)
		if err != nil {
			t.Fatal(err)
		}

		for _, csrFam := range []string{"ed25519", "ca"} {
			cs := csrOpts{family: csrFam, cn: "w.example"}
			cs.defaults()

			csr, id, err := cs.newCSR(ca.Crt)
			if err != nil {
				t.Fatal(err)
			}

			if fam != "ed25519" && csrFam == "ed25519" {
				continue // trustd refuses cross-family CSRs: no reference to issue
			}

			resp := &securityapi.CertificateResponse{Ca: ca.CrtPEM, Crt: issueFrom(t, ca, csr, stdx509.UnknownSignatureAlgorithm)}
			if _, err = checkResponse(csr, id, resp, trustdExp(ca)); err != nil {
				t.Errorf("CA %s CSR %s: trustd's own certificate rejected: %v", fam, csrFam, err)
			}
		}
	}
}

func TestCSRAlgorithmIgnoredFails(t *testing.T) {
	for _, c := range []struct {
		fam string
		alg stdx509.SignatureAlgorithm // what a signer choosing from the CA key would use
	}{
		{"rsa", stdx509.SHA256WithRSA},        // the CSR is SHA512-RSA
		{"ecdsa384", stdx509.ECDSAWithSHA384}, // the CSR is ECDSA-SHA256
	} {
		ca, err := newTalosCA(c.fam)
		if err != nil {
			t.Fatal(err)
		}

		cs := csrOpts{family: "ca", cn: "w.example"}
		cs.defaults()

		csr, id, err := cs.newCSR(ca.Crt)
		if err != nil {
			t.Fatal(err)
		}

		resp := &securityapi.CertificateResponse{Ca: ca.CrtPEM, Crt: issueFrom(t, ca, csr, c.alg)}

		_, err = checkResponse(csr, id, resp, trustdExp(ca))
		if err == nil || !strings.Contains(err.Error(), "signature algorithm") {
			t.Errorf("CA %s signed %s: want a signature algorithm failure, got %v", c.fam, c.alg, err)
		}
	}
}

func TestExtraExtensionFails(t *testing.T) {
	ca, err := newTalosCA("ecdsa")
	if err != nil {
		t.Fatal(err)
	}

	cs := csrOpts{family: "ca", cn: "w.example"}
	cs.defaults()

	csr, id, err := cs.newCSR(ca.Crt)
	if err != nil {
		t.Fatal(err)
	}

	// trustd's certificate with the SAN extension made critical.
	crt, err := x509.NewCertificateFromCSRBytes(ca.CrtPEM, ca.KeyPEM, csr.X509CertificateRequestPEM, serverOnly, dsOnly, stripO)
	if err != nil {
		t.Fatal(err)
	}

	tmpl := *crt.X509Certificate
	for _, e := range crt.X509Certificate.Extensions {
		if e.Id.Equal(oidSAN) {
			e.Critical = true
			tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, e)
		}
	}

	der, err := stdx509.CreateCertificate(rand.Reader, &tmpl, ca.Crt, crt.X509Certificate.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}

	resp := &securityapi.CertificateResponse{Ca: ca.CrtPEM, Crt: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}

	_, err = checkResponse(csr, id, resp, trustdExp(ca))
	if err == nil || !strings.Contains(err.Error(), "trustd: extensions") {
		t.Fatalf("want an extension difference, got %v", err)
	}
}
