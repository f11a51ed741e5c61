#!/usr/bin/env bash
# Validation of the deployment artifacts (make test-chart):
#   1. helm lint --strict and helm template over every value set in
#      tests/chart/values/*.yaml, with the "# expect:" / "# expect-not:" regexes
#      each file carries and the invariants of check_rendered.py;
#   2. every file in tests/chart/invalid/*.yaml must be rejected with the
#      message its "# error:" line names;
#   3. against a real kube-apiserver (hack/k8s/up.sh) with cert-manager's CRDs:
#      server-side dry-run of everything rendered and of manifests/, a real
#      helm install / upgrade / uninstall, the Secret made by the secrets tool;
#   4. tests/chart/secrets-tool.sh (hack/talos-secrets-to-k8s.sh);
#   5. tests/chart/config-doc.sh (--help vs docs/configuration.md) when
#      build/talos-csr-signer exists;
#   6. hack/chart-docs.py --check: the chart README and docs/helm.md's values
#      table are generated from values.yaml and agree with values.schema.json;
#      promtool check rules on the PrometheusRule; the Grafana dashboard's
#      queries name documented metrics;
#   7. tests/chart/docs-blocks.sh: every runnable command block of docs/*.md.
# Plain `helm template` (no --kube-version) must work: helm is built the way
# upstream builds it, with client-go's Kubernetes version as its default.
# Ends with "chart: N passed, M failed, K skipped" (tests/lib.sh); exits non-zero on any failure. Under CI=true
# a missing tool is a failure; locally it is reported as SKIPPED.
# TCS_CHART_NO_APISERVER=1 skips step 3 locally (not allowed under CI=true).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
here=$root/tests/chart
chart=$root/charts/talos-csr-signer
release=tcs
ns=talos-csr-signer
kube_version=1.37.0   # for lint/template only; the apiserver steps use the real server
ci=${CI:-false}
k8s_dir=
ROOT=$root
# shellcheck source=tests/lib.sh
. "$root/tests/lib.sh"
harness_init chart
work=$WORK
# suite_cleanup: the apiserver, if this suite started one.
suite_cleanup() {
	if [ -n "$k8s_dir" ] && [ -f "$k8s_dir/env" ]; then
		"$root/hack/k8s/down.sh" "$k8s_dir" >/dev/null 2>&1 || true
	fi
}
ko() { not_ok "$*"; }
skipped() { skip_or_fail "$*"; } # a failure under CI, a skip locally
finish() {
	harness_finish
	exit $?
}

# ---- tools
py=/usr/bin/python3
if ! "$py" -c 'import yaml' 2>/dev/null; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y python3-yaml >/dev/null 2>&1 ||
		{ apt-get update >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y python3-yaml >/dev/null 2>&1; } || true
fi
"$py" -c 'import yaml' 2>/dev/null || { skipped "python3-yaml not installable"; finish; }
if [ -n "${HELM:-}" ] && [ -x "$HELM" ]; then
	: # HELM given by the caller
elif ! eval "$(TCS_TOOLS_ONLY="helm promtool" "$root/hack/k8s/tools.sh")"; then
	ko "building helm and promtool with hack/k8s/tools.sh"
	finish
fi
[ -x "${HELM:-}" ] || { ko "helm not found after hack/k8s/tools.sh"; finish; }
helm=$HELM

# ---- 1. value sets: lint, template, expectations, invariants
mkdir -p "$work/rendered"
for f in "$here"/values/*.yaml; do
	name=$(basename "$f" .yaml)
	out=$work/rendered/$name.yaml
	if lint=$("$helm" lint --strict --kube-version "$kube_version" -n "$ns" "$chart" -f "$f" 2>&1); then
		ok "$name: helm lint --strict"
	else
		ko "$name: helm lint --strict"
		echo "$lint" | sed 's/^/    /'
	fi
	if ! "$helm" template "$release" "$chart" -n "$ns" --kube-version "$kube_version" -f "$f" >"$out" 2>"$work/err"; then
		ko "$name: helm template"
		sed 's/^/    /' "$work/err"
		continue
	fi
	ok "$name: helm template"
	bad=0
	while IFS= read -r re; do
		grep -qE -- "$re" "$out" || { echo "    expected /$re/ in the output"; bad=1; }
	done < <(sed -n 's/^# expect: //p' "$f")
	while IFS= read -r re; do
		! grep -qE -- "$re" "$out" || { echo "    did not expect /$re/ in the output"; bad=1; }
	done < <(sed -n 's/^# expect-not: //p' "$f")
	if [ "$bad" -eq 0 ]; then ok "$name: expectations"; else ko "$name: expectations"; fi
	if "$py" "$here/check_rendered.py" "$out" "$ns"; then ok "$name: invariants"; else ko "$name: invariants"; fi
done

# NOTES.txt names the worker fields to set. helm template does not render
# NOTES.txt (and helm install --dry-run has no --kube-version), so render a
# copy of the chart in which NOTES.txt is an ordinary template.
cp -r "$chart" "$work/notes-chart"
mv "$work/notes-chart/templates/NOTES.txt" "$work/notes-chart/NOTES.copy"
printf 'notes: |\n{{- tpl (.Files.Get "NOTES.copy") . | nindent 2 }}\n' >"$work/notes-chart/templates/notes.yaml"
if notes=$("$helm" template "$release" "$work/notes-chart" -n "$ns" --kube-version "$kube_version" \
	-f "$here/values/deployment-default.yaml" --show-only templates/notes.yaml 2>&1) &&
	grep -q '^ *machine:$' <<<"$notes" && grep -q 'token: <the CA Secret' <<<"$notes" &&
	grep -q 'crt: <the CA Secret' <<<"$notes" && grep -q 'endpoint: https://192.0.2.10:6443' <<<"$notes" &&
	grep -q "request --endpoint 192.0.2.10:50001 " <<<"$notes" &&
	! grep -qE 'hack/|docs/|\.sh|\.md' <<<"$notes"; then
	ok "NOTES.txt without a cluster: worker fields, the real endpoint, no repository file named"
else
	ko "NOTES.txt without a cluster lists the worker fields and names no repository file"
	echo "$notes" | sed 's/^/    /'
fi

# helm as users have it: no --kube-version, so the chart's kubeVersion is
# checked against helm's built-in default (client-go's version, as upstream's
# release build sets it), not against v1.20.
if out=$("$helm" template "$release" "$chart" -n "$ns" --set 'certManager.certificate.ipAddresses={192.0.2.10}' 2>&1 >/dev/null); then
	ok "plain helm template (no --kube-version) renders the chart (helm $("$helm" version --template '{{.Version}}'))"
else
	ko "plain helm template (no --kube-version): $out"
fi
if out=$("$helm" template "$release" "$chart" -n "$ns" --kube-version 1.24.0 \
	--set 'certManager.certificate.ipAddresses={192.0.2.10}' 2>&1 >/dev/null); then
	ko "--kube-version 1.24.0 accepted despite kubeVersion >=1.25"
elif grep -q "incompatible with Kubernetes v1.24.0" <<<"$out"; then
	ok "--kube-version 1.24.0 is refused by the chart's kubeVersion (the documented offline flag works)"
else
	ko "--kube-version 1.24.0 refused for another reason: $out"
fi

# The defaults alone must be refused: the IP SANs have no safe default.
if out=$("$helm" template "$release" "$chart" -n "$ns" --kube-version "$kube_version" 2>&1); then
	ko "chart defaults without certManager.certificate.ipAddresses are refused"
elif grep -q "ipAddresses" <<<"$out"; then
	ok "chart defaults without certManager.certificate.ipAddresses are refused"
else
	ko "chart defaults refused, but not for ipAddresses: $out"
fi

# ---- 2. values that must be rejected
for f in "$here"/invalid/*.yaml; do
	name=$(basename "$f" .yaml)
	re=$(sed -n 's/^# error: //p' "$f" | head -1)
	[ -n "$re" ] || { ko "invalid/$name: no '# error:' line"; continue; }
	if out=$("$helm" template "$release" "$chart" -n "$ns" --kube-version "$kube_version" -f "$f" 2>&1 >/dev/null); then
		ko "invalid/$name: accepted"
	elif grep -qE -- "$re" <<<"$out"; then
		ok "invalid/$name: rejected with /$re/"
	else
		ko "invalid/$name: rejected, but the message does not match /$re/:"
		echo "$out" | sed 's/^/    /'
	fi
done

# run_docs_blocks: tests/chart/docs_blocks.py, counted into this suite.
docs_blocks_done=0
run_docs_blocks() {
	local out st line
	docs_blocks_done=1
	if out=$(TCS_BIN_DIR="$(dirname "${TCS_BIN:-$root/build/talos-csr-signer}")" "$py" "$here/docs_blocks.py" 2>&1); then st=0; else st=$?; fi
	echo "$out" | grep -E '^(FAIL|SKIPPED|skipped)' | sed 's/^/    /' || true
	line=$(tail -1 <<<"$out")
	if [[ "$line" =~ ([0-9]+)\ passed,\ ([0-9]+)\ failed ]]; then
		PASSED=$((PASSED + BASH_REMATCH[1]))
		FAILED=$((FAILED + BASH_REMATCH[2]))
		echo "docs blocks: $line"
		[ "$st" -eq 0 ] || [ "${BASH_REMATCH[2]}" -gt 0 ] || ko "docs_blocks.py exited $st"
	else
		ko "docs_blocks.py did not finish: $line"
		echo "$out" | tail -5 | sed 's/^/    /'
	fi
}

# ---- 3. a real kube-apiserver
apiserver_tests() {
	local f name
	if ! env_lines=$("$root/hack/k8s/tools.sh" 2>"$work/tools.log"); then
		tail -20 "$work/tools.log" | sed 's/^/    /'
		ko "hack/k8s/tools.sh (kube-apiserver, etcd, kubectl, cert-manager CRDs)"
		return
	fi
	eval "$env_lines"
	k8s_dir=$work/k8s
	if ! "$root/hack/k8s/up.sh" "$k8s_dir" >"$work/up.log" 2>&1; then
		tail -20 "$work/up.log" | sed 's/^/    /'
		ko "hack/k8s/up.sh"
		return
	fi
	# shellcheck disable=SC1091
	. "$k8s_dir/env"
	export KUBECONFIG
	local k=$KUBECTL
	ok "kube-apiserver up ($APISERVER_URL)"

	if "$k" apply --server-side -f "$CERT_MANAGER_CRDS" >"$work/crds.log" 2>&1 &&
		"$k" wait --for=condition=Established --timeout=60s crd/issuers.cert-manager.io \
			crd/certificates.cert-manager.io >/dev/null; then
		ok "cert-manager CRDs installed"
	else
		sed 's/^/    /' "$work/crds.log"
		ko "cert-manager CRDs installed"
		return
	fi
	# The command blocks of docs/*.md, against this apiserver (some create
	# the talos-csr-signer namespace and apply manifests/standalone's RBAC).
	KUBECTL=$k HELM=$helm run_docs_blocks
	for n in "$ns" talos-system tenant-00; do
		"$k" get namespace "$n" >/dev/null 2>&1 || "$k" create namespace "$n" >/dev/null
	done

	# Everything the chart renders. ServiceMonitor and PrometheusRule need the Prometheus
	# Operator CRDs, which no reachable registry serves: it is left out here
	# (rendered and checked above only).
	for f in "$work"/rendered/*.yaml; do
		name=$(basename "$f" .yaml)
		"$py" - "$f" >"$work/dry.yaml" <<-'PY'
			import sys, yaml
			docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] not in ("ServiceMonitor", "PrometheusRule")]
			print(yaml.safe_dump_all(docs))
		PY
		if out=$("$k" apply --dry-run=server -f "$work/dry.yaml" 2>&1); then
			ok "$name: server-side dry-run ($(grep -c 'server dry run' <<<"$out") objects)"
		else
			ko "$name: server-side dry-run"
			echo "$out" | sed 's/^/    /'
		fi
	done

	# The dry-run must be strict: a misspelt field has to be refused, or the
	# passes above prove nothing.
	if printf 'apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: canary, namespace: %s}\nspec: {secretName: x, ipAddress: [192.0.2.1], issuerRef: {name: x}}\n' "$ns" |
		"$k" apply --dry-run=server -f - >/dev/null 2>&1; then
		ko "server-side dry-run accepted an unknown field (validation is not strict)"
	else
		ok "server-side dry-run refuses an unknown field"
	fi

	# manifests/standalone
	if out=$("$k" apply --dry-run=server -f "$root/manifests/standalone/" 2>&1); then
		ok "manifests/standalone: server-side dry-run ($(grep -c 'server dry run' <<<"$out") objects)"
	else
		ko "manifests/standalone: server-side dry-run"
		echo "$out" | sed 's/^/    /'
	fi
	if out=$("$k" apply --dry-run=server -f "$root/manifests/kamaji/10-cert-manager.yaml" 2>&1); then
		ok "manifests/kamaji/10-cert-manager.yaml: server-side dry-run"
	else
		ko "manifests/kamaji/10-cert-manager.yaml: server-side dry-run"
		echo "$out" | sed 's/^/    /'
	fi
	# Kamaji's CRD is not served by any reachable registry. Its
	# additionalContainers / additionalVolumes are core/v1 Container and Volume:
	# put them into a Pod and let the real apiserver validate that, and check
	# that the sidecar is wired consistently (ports, mounts, Secrets).
	if "$py" - "$root/manifests/kamaji" >"$work/kamaji-pod.yaml" <<-'PY'; then
		import sys, yaml
		d = sys.argv[1]
		tcp = yaml.safe_load(open(f"{d}/20-tenantcontrolplane.yaml"))
		certs = [x for x in yaml.safe_load_all(open(f"{d}/10-cert-manager.yaml")) if x]
		dep = tcp["spec"]["controlPlane"]["deployment"]
		c = dep["additionalContainers"][0]
		vols = {v["name"]: v for v in dep["additionalVolumes"]}
		env = {e["name"]: e.get("value") for e in c["env"]}
		errs = []
		for m in c["volumeMounts"]:
		    if m["name"] not in vols: errs.append(f"mount {m['name']} has no volume")
		    if "subPath" in m: errs.append("subPath mounts never update")
		paths = {m["mountPath"]: vols[m["name"]]["secret"]["secretName"] for m in c["volumeMounts"]}
		want = {"CA_CERT_PATH": "/etc/talos-ca/tls.crt", "CA_KEY_PATH": "/etc/talos-ca/tls.key",
		        "TLS_CERT_PATH": "/etc/talos-server-crt/tls.crt", "TLS_KEY_PATH": "/etc/talos-server-crt/tls.key",
		        "TOKEN_PATH": "/etc/talos-ca/token", "PORT": "50001"}
		for k, v in want.items():
		    if env.get(k) != v: errs.append(f"{k} should be {v} (drop-in paths)")
		cert = next(x for x in certs if x["kind"] == "Certificate")
		issuer = next(x for x in certs if x["kind"] == "Issuer")
		if paths.get("/etc/talos-server-crt") != cert["spec"]["secretName"]:
		    errs.append("/etc/talos-server-crt is not the Certificate's Secret")
		if paths.get("/etc/talos-ca") != issuer["spec"]["ca"]["secretName"]:
		    errs.append("/etc/talos-ca is not the Issuer's CA Secret")
		addr = tcp["spec"]["networkProfile"]["address"]
		if addr not in cert["spec"]["ipAddresses"]:
		    errs.append("networkProfile.address is not an IP SAN of the serving certificate")
		ports = [p["containerPort"] for p in c["ports"]]
		extra = tcp["spec"]["controlPlane"]["service"]["additionalPorts"]
		if not any(p["port"] == 50001 and p["targetPort"] in ports for p in extra):
		    errs.append("service.additionalPorts does not expose 50001 to the sidecar")
		if errs:
		    sys.stderr.write("\n".join(errs) + "\n"); sys.exit(1)
		pod = {"apiVersion": "v1", "kind": "Pod",
		       "metadata": {"name": "kamaji-sidecar-check", "namespace": tcp["metadata"]["namespace"]},
		       "spec": {"containers": [c], "volumes": dep["additionalVolumes"]}}
		print(yaml.safe_dump(pod))
	PY
		ok "manifests/kamaji: sidecar wiring (paths, Secrets, SANs, additionalPorts)"
		if out=$("$k" apply --dry-run=server -f "$work/kamaji-pod.yaml" 2>&1); then
			ok "manifests/kamaji: sidecar container and volumes pass a server-side dry-run as a Pod"
		else
			ko "manifests/kamaji: sidecar container and volumes as a Pod"
			echo "$out" | sed 's/^/    /'
		fi
	else
		ko "manifests/kamaji: sidecar wiring"
	fi

	# A real install, upgrade and uninstall (no controllers run here, so the
	# objects are stored but no Pod starts).
	local vals=$here/values/deployment-default.yaml
	if out=$("$helm" install "$release" "$chart" -n "$ns" -f "$vals" 2>&1); then
		ok "helm install"
	else
		ko "helm install"
		echo "$out" | sed 's/^/    /'
	fi
	if out=$("$helm" upgrade "$release" "$chart" -n "$ns" -f "$vals" --set replicaCount=3 2>&1) &&
		[ "$("$k" -n "$ns" get deployment "$release-talos-csr-signer" -o jsonpath='{.spec.replicas}')" = 3 ]; then
		ok "helm upgrade (replicaCount 2 -> 3)"
	else
		ko "helm upgrade"
		echo "$out" | sed 's/^/    /'
	fi
	# The ServiceAccount's real permissions are exactly what the Role grants.
	local sa="system:serviceaccount:$ns:$release-talos-csr-signer"
	can() { "$k" auth can-i "$@" --as "$sa" -n "$ns" 2>/dev/null || true; }
	if [ "$(can watch secret/talos-ca)" = yes ] && [ "$(can get secret/tcs-talos-csr-signer-tls)" = yes ] &&
		[ "$(can get secret/other)" = no ] && [ "$(can list secrets)" = no ] &&
		[ "$(can create events.events.k8s.io)" = yes ] && [ "$(can delete events)" = no ] &&
		[ "$(can create secrets)" = no ]; then
		ok "installed RBAC: only the two Secrets (get/watch) and Events (create)"
	else
		ko "installed RBAC is not least privilege"
	fi
	chart_rbac_issuance
	if "$helm" uninstall "$release" -n "$ns" >/dev/null 2>&1 &&
		! "$k" -n "$ns" get deployment "$release-talos-csr-signer" >/dev/null 2>&1; then
		ok "helm uninstall"
	else
		ko "helm uninstall"
	fi
	export KUBECTL KUBECONFIG
}

# The chart's RBAC proven sufficient, not only minimal: the daemon runs in API
# mode with a token of the ServiceAccount the chart installed (TokenRequest),
# reads the two Secrets the chart names, and issues a certificate to a
# worker-like client. Any permission the daemon lacked would stop it here.
chart_rbac_issuance() {
	local bin=${TCS_BIN:-$root/build/talos-csr-signer} d=$work/rbac-run pid port hport rc i v dlog
	if [ ! -x "$bin" ]; then
		if [ "$ci" = true ]; then ko "chart RBAC issuance: $bin not built"; else skipped "chart RBAC issuance: no binary"; fi
		return
	fi
	mkdir -p "$d"
	"$root/hack/dev-pki.sh" "$d/pki" --ip 127.0.0.1 >/dev/null
	"$k" -n "$ns" create secret generic talos-ca --from-file=tls.crt="$d/pki/ca.crt" \
		--from-file=tls.key="$d/pki/ca.key" --from-file=token="$d/pki/token" >/dev/null
	"$k" -n "$ns" create secret tls "$release-talos-csr-signer-tls" --cert="$d/pki/server.crt" \
		--key="$d/pki/server.key" >/dev/null
	"$k" -n "$ns" create token "$release-talos-csr-signer" --duration=10m >"$d/sa-token"
	port=$(free_port)
	hport=$(free_port)
	BIN=$bin start_daemon rbac-run --wait none -- CA_SECRET="$ns/talos-ca" TLS_SECRET="$ns/$release-talos-csr-signer-tls" \
		KUBE_API_URL="$APISERVER_URL" KUBE_CA_PATH="$APISERVER_CA" KUBE_TOKEN_PATH="$d/sa-token" \
		KUBE_NAMESPACE="$ns" POD_NAME=chart-rbac-check POD_NAMESPACE="$ns" POD_UID=00000000-0000-0000-0000-000000000001 \
		LISTEN_ADDRESS=127.0.0.1 PORT="$port" HTTP_ADDR="127.0.0.1:$hport"
	pid=$D_PID dlog=$D_LOG
	rc=1
	for i in $(seq 1 100); do
		if "$bin" request --endpoint "127.0.0.1:$port" --ca "$d/pki/ca.crt" --token-file "$d/pki/token" \
			--cn worker-rbac --ip 10.0.0.9 --timeout 2s >"$d/request.out" 2>&1; then
			rc=0
			break
		fi
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.2
	done
	if [ $rc -eq 0 ]; then
		ok "daemon with the chart's ServiceAccount token issues a certificate (Secrets read through the chart's Role)"
	else
		ko "daemon with the chart's ServiceAccount token did not issue"
		tail -5 "$d/request.out" "$dlog" | sed 's/^/    /'
	fi
	if grep -q '"code":403\|403 Forbidden\|forbidden' "$dlog"; then
		ko "the daemon hit a 403 with the chart's Role"
		grep -m3 -i 'forbidden\|403' "$dlog" | sed 's/^/    /'
	else
		ok "no 403 with the chart's Role (events included)"
	fi
	chart_notes_live "$d"
	chart_test_hook "$d" "$bin" "$port"

	# Deleting the TLS Secret moves the per-source reload gauge (the last good
	# credentials keep serving).
	"$k" -n "$ns" delete secret "$release-talos-csr-signer-tls" >/dev/null
	v=
	for i in $(seq 1 50); do
		v=$(curl -s "http://127.0.0.1:$hport/metrics" | awk '$1 == "talos_csr_signer_credential_last_reload_success{source=\"tls_secret\"}" { print $2 }')
		[ "$v" = 0 ] && break
		sleep 0.1
	done
	# grep -c, not -q: it reads to the end, so that curl never meets a closed pipe (pipefail).
	if [ "$v" = 0 ] && curl -s "http://127.0.0.1:$hport/metrics" |
		grep -c '^talos_csr_signer_credential_last_reload_success{source="ca_secret"} [01]$' >/dev/null; then
		ok "deleting the TLS Secret sets last_reload_success{source=\"tls_secret\"} to 0"
	else
		ko "deleting the TLS Secret did not move last_reload_success{source=\"tls_secret\"} (${v:-absent})"
	fi
	curl -s "http://127.0.0.1:$hport/metrics" | grep -E '^talos_csr_signer_credential_(last_reload|reloads)' | sed 's/^/    /' || true
	kill -TERM "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null || true
	"$k" -n "$ns" delete secret talos-ca "$release-talos-csr-signer-tls" >/dev/null 2>&1 || true
}

# NOTES.txt against the real apiserver: once the CA Secret exists, the notes
# carry its real machine.ca.crt, and their one-line command (run as printed,
# with the real kubectl) writes a worker patch whose token, CA and endpoint
# are the Secret's and the release's.
chart_notes_live() {
	local d=$1 notes cmd want_crt
	if ! "$helm" upgrade "$release" "$chart" -n "$ns" -f "$here/values/deployment-default.yaml" >/dev/null 2>"$d/upgrade.err"; then
		ko "helm upgrade (for live NOTES)"
		sed 's/^/    /' "$d/upgrade.err"
		return
	fi
	notes=$("$helm" get notes "$release" -n "$ns")
	want_crt=$("$k" -n "$ns" get secret talos-ca -o jsonpath='{.data.tls\.crt}')
	if grep -qF "crt: $want_crt" <<<"$notes" && ! grep -q '<the CA Secret' <<<"$notes" &&
		! grep -qF "$(cat "$d/pki/token")" <<<"$notes"; then
		ok "NOTES.txt prints the CA Secret's real machine.ca.crt (and never the token)"
	else
		ko "NOTES.txt does not print the real machine.ca.crt"
		echo "$notes" | sed 's/^/    /'
	fi
	cmd=$(grep -E '^ +kubectl .* -o go-template=' <<<"$notes" | sed -E 's/^ +kubectl /"$k" /; s/ > worker-patch.yaml$//')
	if [ -n "$cmd" ] && eval "$cmd" >"$d/worker-patch.yaml" 2>"$d/patch.err" &&
		"$py" - "$d/worker-patch.yaml" "$d/pki/token" "$want_crt" <<-'PY'; then
			import sys, yaml
			p = yaml.safe_load(open(sys.argv[1]))
			tok = open(sys.argv[2]).read().strip()
			assert p["machine"]["token"] == tok, "token"
			assert p["machine"]["ca"]["crt"] == sys.argv[3], "ca.crt"
			assert p["machine"]["ca"]["key"] == "", "ca.key"
			assert p["cluster"]["controlPlane"]["endpoint"] == "https://192.0.2.10:6443", "endpoint"
		PY
		ok "the NOTES command writes the complete worker patch (token, ca.crt, endpoint) from the Secret"
	else
		ko "the NOTES command for the worker patch"
		echo "cmd: $cmd" | sed 's/^/    /'
		cat "$d/patch.err" "$d/worker-patch.yaml" 2>/dev/null | sed 's/^/    /'
	fi
}

# The `helm test` hook: installed through helm against the real apiserver
# (no kubelet runs here, so its Pod is stored but never started), then the
# Pod's own command line run against the daemon outside the cluster, with the
# CA Secret's items where the Pod mounts them.
chart_test_hook() {
	local d=$1 bin=$2 port=$3 pod=$release-talos-csr-signer-test-request mnt=$1/mnt out rc
	if ! "$helm" upgrade "$release" "$chart" -n "$ns" -f "$here/values/deployment-default.yaml" \
		--set 'certManager.certificate.ipAddresses={127.0.0.1}' --set "service.port=$port" >/dev/null 2>"$d/upgrade.err"; then
		ko "helm upgrade (test hook)"
		sed 's/^/    /' "$d/upgrade.err"
		return
	fi
	"$helm" test "$release" -n "$ns" --timeout 5s >"$d/helm-test.out" 2>&1 || true
	if "$k" -n "$ns" get pod "$pod" -o json >"$d/test-pod.json" 2>/dev/null; then
		ok "helm test created the hook Pod $pod in the apiserver"
	else
		ko "helm test did not create the hook Pod"
		sed 's/^/    /' "$d/helm-test.out"
		return
	fi
	mkdir -p "$mnt"
	"$k" -n "$ns" get secret talos-ca -o jsonpath='{.data.tls\.crt}' | base64 -d >"$mnt/tls.crt"
	"$k" -n "$ns" get secret talos-ca -o jsonpath='{.data.token}' | base64 -d >"$mnt/token"
	mapfile -t args < <("$py" - "$d/test-pod.json" "$mnt" <<-'PY'
		import json, sys
		pod = json.load(open(sys.argv[1]))
		c = pod["spec"]["containers"][0]
		mount = next(m["mountPath"] for m in c["volumeMounts"] if m["name"] == "talos-ca")
		for a in (c.get("command") or []) + c["args"]:
		    print(a.replace(mount, sys.argv[2]))
	PY
	)
	rc=0
	out=$("$bin" "${args[@]}" 2>&1) || rc=$?
	if [ "$rc" -eq 0 ] && grep -q '^result     ok' <<<"$out" && [ "${args[0]}" = request ] &&
		grep -q -- "--endpoint 127.0.0.1:$port" <<<"${args[*]}"; then
		ok "the hook Pod's command ($bin ${args[*]//$mnt/\/etc/talos-ca}) gets a certificate from the daemon"
	else
		ko "the hook Pod's command failed (exit $rc): ${args[*]}"
		echo "$out" | tail -5 | sed 's/^/    /'
	fi
	# And its failure is a failure: a wrong token makes the same command exit 8.
	echo "zzzzzz.zzzzzzzzzzzzzzzz" >"$mnt/token"
	rc=0
	"$bin" "${args[@]}" >/dev/null 2>&1 || rc=$?
	if [ "$rc" -eq 8 ]; then ok "the hook Pod's command fails (exit 8) with a wrong token"; else
		ko "the hook Pod's command with a wrong token exited $rc, not 8"; fi
}

if [ "${TCS_CHART_NO_APISERVER:-0}" = 1 ] && [ "$ci" != true ]; then
	skipped "apiserver tests (TCS_CHART_NO_APISERVER=1)"
elif [ ! -x "$root/hack/k8s/up.sh" ]; then
	skipped "apiserver tests: hack/k8s/up.sh missing"
else
	apiserver_tests
fi

# ---- 4. the secrets tool (adds a dry-run of its Secret when the apiserver is up)
if out=$("$here/secrets-tool.sh" 2>&1); then st=0; else st=$?; fi
echo "$out" | grep -E '^(FAIL|SKIPPED)' || true
line=$(tail -1 <<<"$out")
if [[ "$line" =~ ([0-9]+)\ passed,\ ([0-9]+)\ failed ]]; then
	PASSED=$((PASSED + BASH_REMATCH[1]))
	FAILED=$((FAILED + BASH_REMATCH[2]))
	echo "secrets-tool.sh: $line"
	[ "$st" -eq 0 ] || [ "${BASH_REMATCH[2]}" -gt 0 ] || ko "secrets-tool.sh exited $st"
else
	ko "secrets-tool.sh did not finish: $line"
fi

# ---- 5. --help vs docs/configuration.md
if [ -x "$root/build/talos-csr-signer" ]; then
	if out=$("$here/config-doc.sh" 2>&1); then ok "config-doc.sh"; else
		ko "config-doc.sh"
		echo "$out" | grep -v '^PASS' | sed 's/^/    /'
	fi
else
	skipped "config-doc.sh: build/talos-csr-signer not built (make build)"
fi

# ---- 6. value docs from one source; alert rules; dashboard
if out=$("$py" "$root/hack/chart-docs.py" --check 2>&1); then
	ok "$out"
else
	ko "hack/chart-docs.py --check (chart README, docs/helm.md, schema vs values.yaml)"
	echo "$out" | sed 's/^/    /'
fi
if "$py" - "$chart/Chart.yaml" <<-'PY'; then
	import sys, yaml
	c = yaml.safe_load(open(sys.argv[1]))
	assert c.get("sources") and all(u.startswith("https://") for u in c["sources"]), "sources"
	assert c.get("maintainers") and all(m.get("name") for m in c["maintainers"]), "maintainers"
	assert str(c.get("icon", "")).startswith("https://"), "icon"
	a = c.get("annotations", {})
	for k in ("artifacthub.io/license", "artifacthub.io/category", "artifacthub.io/images", "artifacthub.io/links"):
	    assert k in a, k
	imgs = yaml.safe_load(a["artifacthub.io/images"])
	assert any(i["image"].endswith(":" + str(c["appVersion"])) for i in imgs), "image tag is the appVersion"
	assert c.get("kubeVersion") == ">=1.25.0-0", "kubeVersion"
PY
	ok "Chart.yaml: sources, maintainers, icon, Artifact Hub annotations (license, category, images, links), kubeVersion"
else
	ko "Chart.yaml metadata"
fi
monitoring_checks() {
	local r=$work/rendered/operator-extras.yaml
	[ -f "$r" ] || { ko "operator-extras.yaml was not rendered"; return; }
	if ! "$py" - "$r" "$work/rules.yaml" "$work/rules-test.yaml" "$work/dashboard.json" "$root/docs/operations.md" "$ns" <<-'PY'; then
		import json, re, sys, yaml
		r, rules, test, dash, ops, ns = sys.argv[1:]
		docs = [d for d in yaml.safe_load_all(open(r)) if d]
		pr = next(d for d in docs if d["kind"] == "PrometheusRule")
		yaml.safe_dump({"groups": pr["spec"]["groups"]}, open(rules, "w"))
		cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard"))
		open(dash, "w").write(cm["data"]["talos-csr-signer.json"])
		d = json.loads(cm["data"]["talos-csr-signer.json"])
		exprs = [t["expr"] for p in d["panels"] for t in p.get("targets", [])]
		exprs += [x["expr"] for g in pr["spec"]["groups"] for x in g["rules"]]
		documented = set(re.findall(r"`((?:talos_csr_signer|process)_[a-z_]+)", open(ops).read()))
		bad = set()
		for e in exprs:
		    for m in re.findall(r"\b((?:talos_csr_signer|process)_[a-z_]+)", e):
		        base = re.sub(r"_(bucket|sum|count)$", "", m)
		        if m not in documented and base not in documented:
		            bad.add(m)
		if bad:
		    sys.exit("metrics used by the alerts or the dashboard but not in docs/operations.md: %s" % sorted(bad))
		# promtool unit tests of the alerts: each fires on the series that should fire it.
		lbl = 'namespace="%s",pod="p"' % ns
		t = {"rule_files": [rules], "evaluation_interval": "1m", "tests": [{
		    "interval": "1m",
		    "input_series": [
		        {"series": 'talos_csr_signer_certificate_expiry_timestamp_seconds{%s,certificate="serving"}' % lbl,
		         "values": "864000x180"},
		        {"series": 'talos_csr_signer_certificate_expiry_timestamp_seconds{%s,certificate="ca"}' % lbl,
		         "values": "900000000x180"},
		        {"series": 'talos_csr_signer_credential_last_reload_success{%s,source="tls_secret"}' % lbl,
		         "values": "1 1 0x178"},
		        {"series": 'talos_csr_signer_self_probe_up{%s}' % lbl, "values": "1x10 0x170"},
		        {"series": 'talos_csr_signer_requests_total{%s,result="issued"}' % lbl, "values": "0+1x180"},
		        {"series": 'talos_csr_signer_requests_total{%s,result="unauthenticated"}' % lbl, "values": "0+1x180"},
		        {"series": 'talos_csr_signer_requests_total{%s,result="rate_limited"}' % lbl, "values": "0+2x180"},
		    ],
		    "alert_rule_test": [
		        {"eval_time": "2h", "alertname": "TalosCSRSignerCertificateExpiringSoon", "exp_alerts": [{
		            "exp_labels": {"severity": "warning", "team": "platform", "namespace": ns, "pod": "p",
		                           "certificate": "serving"}}]},
		        {"eval_time": "2h", "alertname": "TalosCSRSignerCertificateExpired", "exp_alerts": []},
		        {"eval_time": "30m", "alertname": "TalosCSRSignerCredentialReloadFailing", "exp_alerts": [{
		            "exp_labels": {"severity": "warning", "team": "platform", "namespace": ns, "pod": "p",
		                           "source": "tls_secret"}}]},
		        {"eval_time": "30m", "alertname": "TalosCSRSignerSelfProbeFailing", "exp_alerts": [{
		            "exp_labels": {"severity": "critical", "team": "platform", "namespace": ns, "pod": "p"}}]},
		        {"eval_time": "1h", "alertname": "TalosCSRSignerIssuanceFailures", "exp_alerts": [{
		            "exp_labels": {"severity": "warning", "team": "platform", "namespace": ns}}]},
		        {"eval_time": "1h", "alertname": "TalosCSRSignerRateLimiting", "exp_alerts": [{
		            "exp_labels": {"severity": "info", "team": "platform", "namespace": ns, "pod": "p"}}]},
		    ]}]}
		# The unit test checks when each alert fires and its labels; the annotation
		# templates are checked by `promtool check rules` on the full file.
		bare = {"groups": [dict(g, rules=[{k: v for k, v in x.items() if k != "annotations"} for x in g["rules"]])
		                   for g in pr["spec"]["groups"]]}
		yaml.safe_dump(bare, open(rules + ".bare", "w"))
		t["rule_files"] = [rules + ".bare"]
		yaml.safe_dump(t, open(test, "w"))
	PY
		ko "PrometheusRule and dashboard extraction"
		return
	fi
	ok "the alerts and the dashboard only use metrics docs/operations.md lists"
	if [ -z "${PROMTOOL:-}" ] || [ ! -x "$PROMTOOL" ]; then
		skipped "promtool not built (hack/k8s/tools.sh TCS_TOOLS_ONLY=promtool)"
		return
	fi
	if out=$("$PROMTOOL" check rules "$work/rules.yaml" 2>&1); then
		ok "promtool check rules: $(grep -o 'SUCCESS: [0-9]* rules found' <<<"$out")"
	else
		ko "promtool check rules"
		echo "$out" | sed 's/^/    /'
	fi
	if out=$(cd "$work" && "$PROMTOOL" test rules "$work/rules-test.yaml" 2>&1); then
		ok "promtool test rules: every alert fires on the series meant to fire it"
	else
		ko "promtool test rules"
		echo "$out" | sed 's/^/    /'
	fi
}
monitoring_checks

# ---- 7. docs blocks without an apiserver (with one, apiserver_tests ran them)
[ "$docs_blocks_done" = 1 ] || run_docs_blocks

finish
