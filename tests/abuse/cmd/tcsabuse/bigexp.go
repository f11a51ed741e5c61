package main

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math/big"
)

// Object identifiers of PKCS #1 (RFC 8017, appendix C).
var (
	oidRSAEncryption = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidSHA256WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	// DER prefix of DigestInfo{sha256, NULL, OCTET STRING(32)} (RFC 8017 9.2, note 1).
	sha256DigestInfo = []byte{0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
		0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20}
)

type algorithmID struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters asn1.RawValue
}

type rsaPublicKey struct {
	N *big.Int
	E *big.Int
}

type publicKeyInfo struct {
	Algorithm algorithmID
	PublicKey asn1.BitString
}

type requestInfo struct {
	Version    int
	Subject    asn1.RawValue
	Key        publicKeyInfo
	Attributes asn1.RawValue
}

type certificationRequest struct {
	Info      asn1.RawValue
	Algorithm algorithmID
	Signature asn1.BitString
}

// bigExponentCSR builds a PKCS #10 request (PEM) for an RSA key of `bits`
// whose public exponent has `ebits` bits, correctly signed with SHA256-RSA,
// so that a verifier pays the full price of the exponent. Go's crypto/x509
// and crypto/rsa refuse such keys, hence the hand-made DER and the bare
// modular exponentiation.
func bigExponentCSR(bits, ebits int, cn string) ([]byte, error) {
	one := big.NewInt(1)
	var n, lambda, e, d *big.Int
	for {
		p, err := rand.Prime(rand.Reader, bits/2)
		if err != nil {
			return nil, err
		}
		q, err := rand.Prime(rand.Reader, bits-bits/2)
		if err != nil {
			return nil, err
		}
		n = new(big.Int).Mul(p, q)
		if n.BitLen() != bits || p.Cmp(q) == 0 {
			continue
		}
		p1 := new(big.Int).Sub(p, one)
		q1 := new(big.Int).Sub(q, one)
		g := new(big.Int).GCD(nil, nil, p1, q1)
		lambda = new(big.Int).Div(new(big.Int).Mul(p1, q1), g)
		break
	}
	for i := 0; i < 1000; i++ {
		r, err := rand.Int(rand.Reader, new(big.Int).Lsh(one, uint(ebits-1)))
		if err != nil {
			return nil, err
		}
		e = r.SetBit(r, ebits-1, 1).SetBit(r, 0, 1)
		if d = new(big.Int).ModInverse(e, lambda); d != nil {
			break
		}
	}
	if d == nil {
		return nil, errors.New("no invertible exponent found")
	}

	subject, err := asn1.Marshal(pkix.Name{CommonName: cn}.ToRDNSequence())
	if err != nil {
		return nil, err
	}
	pub, err := asn1.Marshal(rsaPublicKey{N: n, E: e})
	if err != nil {
		return nil, err
	}
	info, err := asn1.Marshal(requestInfo{
		Subject: asn1.RawValue{FullBytes: subject},
		Key: publicKeyInfo{
			Algorithm: algorithmID{Algorithm: oidRSAEncryption, Parameters: asn1.NullRawValue},
			PublicKey: asn1.BitString{Bytes: pub, BitLength: 8 * len(pub)},
		},
		Attributes: asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true},
	})
	if err != nil {
		return nil, err
	}

	// EMSA-PKCS1-v1_5 (RFC 8017 9.2), then s = m^d mod n.
	k := (bits + 7) / 8
	h := sha256.Sum256(info)
	t := append(append([]byte{}, sha256DigestInfo...), h[:]...)
	em := make([]byte, k)
	em[1] = 0x01
	for i := 2; i < k-len(t)-1; i++ {
		em[i] = 0xff
	}
	copy(em[k-len(t):], t)
	s := new(big.Int).Exp(new(big.Int).SetBytes(em), d, n).FillBytes(make([]byte, k))

	der, err := asn1.Marshal(certificationRequest{
		Info:      asn1.RawValue{FullBytes: info},
		Algorithm: algorithmID{Algorithm: oidSHA256WithRSA, Parameters: asn1.NullRawValue},
		Signature: asn1.BitString{Bytes: s, BitLength: 8 * len(s)},
	})
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}
