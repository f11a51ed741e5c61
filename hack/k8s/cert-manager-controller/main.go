// Command cert-manager-controller runs cert-manager's own controllers (the
// packages of github.com/cert-manager/cert-manager, built by hack/k8s/tools.sh)
// for the cluster test suite. cert-manager publishes its controller's main
// package as a nested module that the Go module proxy does not serve, so this
// file wires the same public controller packages together: the Certificate
// controllers, the CertificateRequest approver, the CA and self-signed
// CertificateRequest issuers and the Issuer/ClusterIssuer readiness
// controllers. No ACME, Vault, Venafi, ingress or Gateway support.
//
// Flags: --kubeconfig (default: in-cluster), --namespace (default: all),
// --cluster-resource-namespace, --v.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"sync"
	"syscall"

	"k8s.io/klog/v2"

	controllerpkg "github.com/cert-manager/cert-manager/pkg/controller"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	_ "github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	_ "github.com/cert-manager/cert-manager/pkg/controller/issuers"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
)

// The controllers this binary runs, by the names they register under.
var wanted = []string{
	"certificaterequests-approver",
	"certificaterequests-issuer-ca",
	"certificaterequests-issuer-selfsigned",
	"certificates-issuing",
	"certificates-key-manager",
	"certificates-readiness",
	"certificates-request-manager",
	"certificates-revision-manager",
	"certificates-trigger",
	"clusterissuers",
	"issuers",
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig file (default: in-cluster configuration)")
	namespace := flag.String("namespace", "", "namespace to watch (default: all)")
	clusterNS := flag.String("cluster-resource-namespace", "cert-manager", "namespace of ClusterIssuer Secrets")
	klogFlags := flag.NewFlagSet("klog", flag.ExitOnError)
	klog.InitFlags(klogFlags)
	verbosity := flag.String("v", "2", "log verbosity")
	flag.Parse()
	_ = klogFlags.Set("v", *verbosity)
	logf.InitLogs()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx = logf.NewContext(ctx, klog.Background(), "cert-manager-controller")

	if err := run(ctx, *kubeconfig, *namespace, *clusterNS); err != nil {
		fmt.Fprintf(os.Stderr, "cert-manager-controller: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, kubeconfig, namespace, clusterNS string) error {
	opts := controllerpkg.ContextOptions{
		Kubeconfig:         kubeconfig,
		Namespace:          namespace,
		KubernetesAPIQPS:   20,
		KubernetesAPIBurst: 50,
	}
	opts.IssuerOptions.ClusterResourceNamespace = clusterNS
	factory, err := controllerpkg.NewContextFactory(ctx, opts)
	if err != nil {
		return fmt.Errorf("context: %w", err)
	}
	known := controllerpkg.Known()
	names := make([]string, 0, len(wanted))
	for _, n := range wanted {
		if _, ok := known[n]; !ok {
			return fmt.Errorf("controller %q is not registered in this cert-manager version", n)
		}
		names = append(names, n)
	}
	sort.Strings(names)

	loops := make(map[string]controllerpkg.Interface, len(names))
	for _, n := range names {
		c, err := known[n](factory)
		if err != nil {
			return fmt.Errorf("controller %s: %w", n, err)
		}
		loops[n] = c
	}
	// The informers the controllers registered are started once all exist.
	base, err := factory.Build()
	if err != nil {
		return fmt.Errorf("context: %w", err)
	}
	base.KubeSharedInformerFactory.Start(ctx.Done())
	base.SharedInformerFactory.Start(ctx.Done())
	base.HTTP01ResourceMetadataInformersFactory.Start(ctx.Done())

	var wg sync.WaitGroup
	errs := make(chan error, len(loops))
	for n, c := range loops {
		wg.Add(1)
		go func(n string, c controllerpkg.Interface) {
			defer wg.Done()
			klog.InfoS("starting controller", "controller", n)
			if err := c.Run(2, ctx); err != nil {
				errs <- fmt.Errorf("controller %s: %w", n, err)
			}
		}(n, c)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	return nil
}
