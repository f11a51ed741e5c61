package main

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/tls"
	stdx509 "crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/siderolabs/crypto/x509"
	securityapi "github.com/siderolabs/talos/pkg/machinery/api/security"
)

var (
	oidOrganization   = asn1.ObjectIdentifier{2, 5, 4, 10}
	oidSKID           = asn1.ObjectIdentifier{2, 5, 29, 14}
	oidKeyUsage       = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidSAN            = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidBasicConstr    = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidAKID           = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidExtKeyUsage    = asn1.ObjectIdentifier{2, 5, 29, 37}
	allowedExtensions = []asn1.ObjectIdentifier{oidSKID, oidKeyUsage, oidSAN, oidAKID, oidExtKeyUsage}
)

// expectations describe what the issued certificate must look like beyond
// the fixed Talos profile.
type expectations struct {
	ttl      time.Duration          // CERT_TTL of the daemon
	backdate time.Duration          // CERT_BACKDATE of the daemon
	caList   []*stdx509.Certificate // exact expected content of `ca`, in order (nil: not checked)
	issuer   *stdx509.Certificate   // expected issuing CA (nil: the last cert of `ca`)
	start    time.Time              // when the call started
	end      time.Time              // when the answer arrived
	// trustd: the issuing CA with its key. When set, the certificate is
	// compared field by field with the one siderolabs/crypto (trustd's
	// signer) issues for the same CSR and CA.
	trustd *x509.CertificateAuthority
}

// checkSummary is what a successful check reports.
type checkSummary struct {
	Serial    string `json:"serial"`
	Issuer    string `json:"issuer_skid"`
	SigAlg    string `json:"sig_alg"`
	LeafKey   string `json:"leaf_key"`
	CACount   int    `json:"ca_count"`
	NotBefore string `json:"not_before"`
	NotAfter  string `json:"not_after"`
}

// checkResponse verifies a Certificate answer the way a Talos worker's apid
// will use it, plus the issuance profile that DESIGN.md section 1 promises.
func checkResponse(csr *x509.CertificateSigningRequest, identity *x509.PEMEncodedCertificateAndKey, resp *securityapi.CertificateResponse, exp expectations) (*checkSummary, error) {
	var problems []string

	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	// crt: exactly one CERTIFICATE block, trailing newline.
	block, rest := pem.Decode(resp.Crt)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("crt: no CERTIFICATE PEM block (got %d bytes)", len(resp.Crt))
	}

	if len(bytes.TrimSpace(rest)) != 0 {
		fail("crt: %d bytes after the first PEM block (must be exactly one certificate)", len(rest))
	}

	if !bytes.HasSuffix(resp.Crt, []byte("\n")) {
		fail("crt: no trailing newline")
	}

	// apid: tls.X509KeyPair(crt, key) must work.
	pair, err := tls.X509KeyPair(resp.Crt, identity.Key)
	if err != nil {
		return nil, fmt.Errorf("apid would fail: failed to parse server cert and key into a TLS Certificate: %w", err)
	}

	leaf, err := stdx509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("crt: %w", err)
	}

	// apid: ca must go into a CertPool.
	caPool := stdx509.NewCertPool()
	if !caPool.AppendCertsFromPEM(resp.Ca) {
		return nil, errors.New("apid would fail: failed to parse CA certs into a CertPool")
	}

	caCerts, err := parseAllCerts(resp.Ca)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}

	if !bytes.HasSuffix(resp.Ca, []byte("\n")) || bytes.Contains(resp.Ca, []byte("-----END CERTIFICATE----------BEGIN")) {
		fail("ca: PEM blocks must each end in a newline")
	}

	if exp.caList != nil && !sameCertList(caCerts, exp.caList) {
		fail("ca: got %d certificate(s) %s, want %d %s", len(caCerts), describeCerts(caCerts), len(exp.caList), describeCerts(exp.caList))
	}

	issuer := caCerts[len(caCerts)-1]
	if exp.issuer != nil {
		if !bytes.Equal(issuer.Raw, exp.issuer.Raw) {
			fail("ca: issuing CA is not the last certificate of ca")
		}

		issuer = exp.issuer
	}

	if err = leaf.CheckSignatureFrom(issuer); err != nil {
		fail("crt: not signed by the issuing CA (%s): %v", describeCerts([]*stdx509.Certificate{issuer}), err)
	}

	// Chain to ca with serverAuth, as talosctl / the control-plane apid will.
	if _, err = leaf.Verify(stdx509.VerifyOptions{Roots: caPool, KeyUsages: []stdx509.ExtKeyUsage{stdx509.ExtKeyUsageServerAuth}}); err != nil {
		fail("crt: does not verify against ca for serverAuth: %v", err)
	}

	// CVE-2022-36103: it must never be usable as a client certificate.
	if _, err = leaf.Verify(stdx509.VerifyOptions{Roots: caPool, KeyUsages: []stdx509.ExtKeyUsage{stdx509.ExtKeyUsageClientAuth}}); err == nil {
		fail("crt: verifies for clientAuth (must be serverAuth only)")
	}

	req, err := stdx509.ParseCertificateRequest(csrDER(csr))
	if err != nil {
		return nil, fmt.Errorf("own CSR does not parse: %w", err)
	}

	checkProfile(leaf, req, issuer, exp, fail)

	// apid serves this pair; a client trusting ca dials the worker's IP.
	if len(req.IPAddresses) > 0 {
		if err = handshakeAsApid(pair, caPool, req.IPAddresses[0]); err != nil {
			fail("apid TLS handshake with the issued pair failed: %v", err)
		}
	}

	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}

	return &checkSummary{
		Serial:    leaf.SerialNumber.Text(16),
		Issuer:    hex.EncodeToString(leaf.AuthorityKeyId),
		SigAlg:    leaf.SignatureAlgorithm.String(),
		LeafKey:   keyFamily(leaf.PublicKey),
		CACount:   len(caCerts),
		NotBefore: leaf.NotBefore.UTC().Format(time.RFC3339),
		NotAfter:  leaf.NotAfter.UTC().Format(time.RFC3339),
	}, nil
}

func checkProfile(leaf *stdx509.Certificate, req *stdx509.CertificateRequest, issuer *stdx509.Certificate, exp expectations, fail func(string, ...any)) {
	if leaf.Version != 3 {
		fail("version %d, want 3", leaf.Version)
	}

	// Subject: the CSR's minus every Organization.
	for _, n := range leaf.Subject.Names {
		if n.Type.Equal(oidOrganization) {
			fail("subject still carries O=%v (CVE-2022-36103)", n.Value)
		}
	}

	var reqSubj, leafSubj pkix.RDNSequence
	if _, err := asn1.Unmarshal(req.RawSubject, &reqSubj); err != nil {
		fail("CSR subject: %v", err)
	}

	if _, err := asn1.Unmarshal(leaf.RawSubject, &leafSubj); err != nil {
		fail("subject: %v", err)
	}

	if got, want := leafSubj.String(), withoutOrganization(reqSubj).String(); got != want {
		fail("subject %q, want %q", got, want)
	}

	// SANs: the CSR's DNS names and IPs verbatim, nothing else.
	if !slices.Equal(leaf.DNSNames, req.DNSNames) {
		fail("DNS SANs %v, want %v", leaf.DNSNames, req.DNSNames)
	}

	if !slices.EqualFunc(leaf.IPAddresses, req.IPAddresses, func(a, b net.IP) bool { return a.Equal(b) }) {
		fail("IP SANs %v, want %v", leaf.IPAddresses, req.IPAddresses)
	}

	if len(leaf.URIs) > 0 || len(leaf.EmailAddresses) > 0 {
		fail("unexpected URI/e-mail SANs %v %v", leaf.URIs, leaf.EmailAddresses)
	}

	// Usages.
	if leaf.KeyUsage != stdx509.KeyUsageDigitalSignature {
		fail("KeyUsage %#x, want digitalSignature only", leaf.KeyUsage)
	}

	if !slices.Equal(leaf.ExtKeyUsage, []stdx509.ExtKeyUsage{stdx509.ExtKeyUsageServerAuth}) || len(leaf.UnknownExtKeyUsage) > 0 {
		fail("ExtKeyUsage %v %v, want [serverAuth] only", leaf.ExtKeyUsage, leaf.UnknownExtKeyUsage)
	}

	for _, e := range leaf.Extensions {
		switch {
		case e.Id.Equal(oidKeyUsage) && !e.Critical:
			fail("KeyUsage extension is not critical")
		case e.Id.Equal(oidBasicConstr):
			fail("basicConstraints present (must be absent)")
		case !slices.ContainsFunc(allowedExtensions, e.Id.Equal):
			fail("unexpected extension %v", e.Id)
		}
	}

	if len(issuer.SubjectKeyId) == 0 || !bytes.Equal(leaf.AuthorityKeyId, issuer.SubjectKeyId) {
		fail("AKID %x, want the CA's SKID %x", leaf.AuthorityKeyId, issuer.SubjectKeyId)
	}

	if !bytes.Equal(leaf.RawIssuer, issuer.RawSubject) {
		fail("issuer name is not the CA's subject")
	}

	// Serial: positive, 128 random bits (fewer than 64 significant bits
	// would happen with probability 2^-64).
	if leaf.SerialNumber.Sign() <= 0 || leaf.SerialNumber.BitLen() > 128 || leaf.SerialNumber.BitLen() < 64 {
		fail("serial %s is not a positive 128-bit random number", leaf.SerialNumber.Text(16))
	}

	// Validity.
	const slack = 10 * time.Second

	if leaf.NotBefore.Before(exp.start.Add(-exp.backdate-slack)) || leaf.NotBefore.After(exp.end.Add(slack)) {
		fail("notBefore %s not within backdate %s of the call (%s)", leaf.NotBefore.UTC().Format(time.RFC3339), exp.backdate, exp.start.UTC().Format(time.RFC3339))
	}

	lo := exp.start.Add(exp.ttl - exp.backdate - slack)
	hi := exp.end.Add(exp.ttl + slack)

	if leaf.NotAfter.Before(lo) || leaf.NotAfter.After(hi) {
		fail("notAfter %s, want about %s after the call (%s)", leaf.NotAfter.UTC().Format(time.RFC3339), exp.ttl, exp.start.UTC().Format(time.RFC3339))
	}

	// Signature algorithm: trustd's, the CSR's own whenever it fits the CA key.
	if want := trustdSigAlg(issuer, req); leaf.SignatureAlgorithm != want {
		fail("signature algorithm %s, want %s (CSR signed %s, %s CA)", leaf.SignatureAlgorithm, want, req.SignatureAlgorithm, keyFamily(issuer.PublicKey))
	}

	if exp.trustd != nil {
		compareWithTrustd(leaf, req, exp, fail)
	}

	// The issued key is the CSR's key.
	if !publicKeysEqual(leaf.PublicKey, req.PublicKey) {
		fail("public key differs from the CSR's")
	}
}

func withoutOrganization(in pkix.RDNSequence) pkix.RDNSequence {
	var out pkix.RDNSequence

	for _, rdn := range in {
		var kept pkix.RelativeDistinguishedNameSET

		for _, atv := range rdn {
			if !atv.Type.Equal(oidOrganization) {
				kept = append(kept, atv)
			}
		}

		if len(kept) > 0 {
			out = append(out, kept)
		}
	}

	return out
}

// trustdSigAlg is the signature algorithm trustd's certificate carries:
// siderolabs/crypto copies the CSR's, and Go signs with it whenever it fits
// the CA key. Where it does not (a worker key of another family), trustd
// refuses and the daemon chooses from the CA key: ECDSA SHA-256 (SHA-384 for
// P-384, SHA-512 for P-521), SHA256-RSA, pure Ed25519.
func trustdSigAlg(ca *stdx509.Certificate, req *stdx509.CertificateRequest) stdx509.SignatureAlgorithm {
	csr := req.SignatureAlgorithm

	switch k := ca.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if slices.Contains([]stdx509.SignatureAlgorithm{stdx509.ECDSAWithSHA256, stdx509.ECDSAWithSHA384, stdx509.ECDSAWithSHA512}, csr) {
			return csr
		}

		switch k.Curve {
		case elliptic.P384():
			return stdx509.ECDSAWithSHA384
		case elliptic.P521():
			return stdx509.ECDSAWithSHA512
		default:
			return stdx509.ECDSAWithSHA256
		}
	case *rsa.PublicKey:
		if slices.Contains([]stdx509.SignatureAlgorithm{stdx509.SHA256WithRSA, stdx509.SHA384WithRSA, stdx509.SHA512WithRSA}, csr) {
			return csr
		}

		return stdx509.SHA256WithRSA
	default:
		return stdx509.PureEd25519
	}
}

// compareWithTrustd issues, with siderolabs/crypto exactly as trustd calls it
// (KeyUsage digitalSignature, ExtKeyUsage serverAuth, Organization removed),
// a certificate for the same CSR from the same CA, and compares: signature
// algorithm, every extension (OID, criticality and value), subject, issuer,
// SANs and validity length (trustd's 24 h plus the daemon's backdate). For a
// cross-family CSR, which trustd refuses, the reference is trustd's answer to
// the same request from a worker whose key fits the CA (the Talos 1.11+
// shape); everything but the key-dependent signature algorithm is compared.
func compareWithTrustd(leaf *stdx509.Certificate, req *stdx509.CertificateRequest, exp expectations, fail func(string, ...any)) {
	ca := exp.trustd
	opts := []x509.Option{
		x509.KeyUsage(stdx509.KeyUsageDigitalSignature),
		x509.ExtKeyUsage([]stdx509.ExtKeyUsage{stdx509.ExtKeyUsageServerAuth}),
		x509.OverrideSubject(func(n *pkix.Name) { n.Organization = nil }),
	}

	ref, err := x509.NewCertificateFromCSR(ca.Crt, ca.Key, req, opts...)
	crossFamily := err != nil

	if crossFamily {
		if !strings.Contains(err.Error(), "does not match private key type") {
			fail("trustd's signer refused the CSR: %v", err)

			return
		}

		same, _, err2 := x509.NewCSRAndIdentityFromCA(ca.Crt, x509.CommonName(req.Subject.CommonName),
			x509.Organization(req.Subject.Organization...), x509.DNSNames(req.DNSNames), x509.IPAddresses(req.IPAddresses))
		if err2 != nil {
			fail("reference CSR: %v", err2)

			return
		}

		sameReq, err2 := stdx509.ParseCertificateRequest(csrDER(same))
		if err2 != nil {
			fail("reference CSR: %v", err2)

			return
		}

		if ref, err = x509.NewCertificateFromCSR(ca.Crt, ca.Key, sameReq, opts...); err != nil {
			fail("trustd's signer refused a CSR that fits the CA: %v", err)

			return
		}
	}

	want := ref.X509Certificate

	if !crossFamily && leaf.SignatureAlgorithm != want.SignatureAlgorithm {
		fail("trustd: signature algorithm %s, trustd's %s", leaf.SignatureAlgorithm, want.SignatureAlgorithm)
	}

	if leaf.Version != want.Version {
		fail("trustd: version %d, trustd's %d", leaf.Version, want.Version)
	}

	if got, w := extensionSummary(leaf), extensionSummary(want); got != w {
		fail("trustd: extensions %s, trustd's %s", got, w)
	}

	if !bytes.Equal(leaf.RawSubject, want.RawSubject) {
		fail("trustd: subject %q, trustd's %q", leaf.Subject, want.Subject)
	}

	if !bytes.Equal(leaf.RawIssuer, want.RawIssuer) {
		fail("trustd: issuer %q, trustd's %q", leaf.Issuer, want.Issuer)
	}

	if !slices.Equal(leaf.DNSNames, want.DNSNames) ||
		!slices.EqualFunc(leaf.IPAddresses, want.IPAddresses, func(a, b net.IP) bool { return a.Equal(b) }) {
		fail("trustd: SANs %v %v, trustd's %v %v", leaf.DNSNames, leaf.IPAddresses, want.DNSNames, want.IPAddresses)
	}

	// trustd issues for 24 h from now; the daemon for CERT_TTL from now,
	// with notBefore backdated by CERT_BACKDATE.
	got := leaf.NotAfter.Sub(leaf.NotBefore) - exp.backdate
	wantLen := want.NotAfter.Sub(want.NotBefore) + exp.ttl - 24*time.Hour

	if d := got - wantLen; d < -time.Second || d > time.Second {
		fail("trustd: validity %s (+%s backdate), trustd's %s for CERT_TTL %s", got, exp.backdate, want.NotAfter.Sub(want.NotBefore), exp.ttl)
	}
}

// extensionSummary renders every extension as OID, criticality and value, in
// OID order (the order of extensions carries no meaning).
func extensionSummary(c *stdx509.Certificate) string {
	parts := make([]string, 0, len(c.Extensions))

	for _, e := range c.Extensions {
		parts = append(parts, fmt.Sprintf("%s(critical=%t)=%x", e.Id, e.Critical, e.Value))
	}

	slices.Sort(parts)

	return "[" + strings.Join(parts, " ") + "]"
}

func publicKeysEqual(a, b any) bool {
	type equaler interface{ Equal(x crypto.PublicKey) bool }

	ea, ok := a.(equaler)

	return ok && ea.Equal(b)
}

func csrDER(csr *x509.CertificateSigningRequest) []byte {
	block, _ := pem.Decode(csr.X509CertificateRequestPEM)
	if block == nil {
		return nil
	}

	return block.Bytes
}

func describeCerts(certs []*stdx509.Certificate) string {
	parts := make([]string, 0, len(certs))

	for _, c := range certs {
		parts = append(parts, fmt.Sprintf("[%s %s skid=%x]", c.Subject, keyFamily(c.PublicKey), c.SubjectKeyId))
	}

	return strings.Join(parts, " ")
}

// handshakeAsApid serves the issued pair over an in-memory pipe and dials it
// as talosctl would dial the worker: roots = ca, ServerName = the worker IP.
func handshakeAsApid(pair tls.Certificate, roots *stdx509.CertPool, ip net.IP) error {
	c1, c2 := net.Pipe()
	defer c1.Close() //nolint:errcheck
	defer c2.Close() //nolint:errcheck

	_ = c1.SetDeadline(time.Now().Add(10 * time.Second))
	_ = c2.SetDeadline(time.Now().Add(10 * time.Second))

	srv := tls.Server(c1, &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12})
	cli := tls.Client(c2, &tls.Config{RootCAs: roots, ServerName: ip.String(), MinVersion: tls.VersionTLS12})

	errc := make(chan error, 1)

	go func() { errc <- srv.Handshake() }()

	cerr := cli.Handshake()
	if cerr != nil {
		c2.Close() //nolint:errcheck
	}

	serr := <-errc

	if cerr != nil {
		return cerr
	}

	return serr
}

func keyFamilyOfCSR(csr *x509.CertificateSigningRequest) string {
	req, err := stdx509.ParseCertificateRequest(csrDER(csr))
	if err != nil {
		return "unparsable"
	}

	return keyFamily(req.PublicKey)
}
