package main

import (
	stdx509 "crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
)

// runCSR writes csr.pem and key.pem made with siderolabs/crypto, for the
// independent (non-Go) clients that have no CSR code of their own.
func runCSR(args []string) error {
	fs := flag.NewFlagSet("csr", flag.ContinueOnError)

	var cs csrOpts

	cs.register(fs)
	out := fs.String("out", "", "output directory")
	caFile := fs.String("ca", "", "CA file (needed for --csr-family ca)")

	if err := fs.Parse(args); err != nil {
		return err
	}

	if *out == "" {
		return errors.New("--out is required")
	}

	cs.defaults()

	var lastCA *stdx509.Certificate

	if *caFile != "" {
		certs, err := readCertsFiles([]string{*caFile})
		if err != nil {
			return err
		}

		lastCA = certs[len(certs)-1]
	}

	csr, identity, err := cs.newCSR(lastCA)
	if err != nil {
		return err
	}

	if err = os.MkdirAll(*out, 0o755); err != nil {
		return err
	}

	if err = writeFileAtomic(filepath.Join(*out, "csr.pem"), csr.X509CertificateRequestPEM, 0o644); err != nil {
		return err
	}

	if err = writeFileAtomic(filepath.Join(*out, "key.pem"), identity.Key, 0o600); err != nil {
		return err
	}

	fmt.Printf("csr: %s\n", filepath.Join(*out, "csr.pem"))

	return nil
}
