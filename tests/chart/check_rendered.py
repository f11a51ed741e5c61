#!/usr/bin/env python3
"""Structural checks on one `helm template` output of the talos-csr-signer chart.

usage: check_rendered.py RENDERED.yaml RELEASE_NAMESPACE

Checks the invariants that every value set must keep (hardening, probes, the
downward-API identity, least-privilege RBAC that matches the credential mode,
cert-manager objects that fit together). Prints one line per failed invariant
and exits 1 if any failed.
"""
import sys

import yaml

problems = []


def check(cond, msg):
    if not cond:
        problems.append(msg)


def main():
    path, release_ns = sys.argv[1], sys.argv[2]
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)

    check("Secret" not in by_kind, "the chart must never render a Secret (no key material in Helm values)")
    workloads = by_kind.get("Deployment", []) + by_kind.get("DaemonSet", [])
    check(len(workloads) == 1, f"exactly one workload expected, got {len(workloads)}")
    if len(workloads) != 1:
        return
    w = workloads[0]
    pod = w["spec"]["template"]["spec"]
    psc = pod.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True, "pod runAsNonRoot must be true")
    check(psc.get("runAsUser") == 65532, "pod runAsUser must be 65532")
    check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "seccomp RuntimeDefault")
    check(pod.get("enableServiceLinks") is False, "enableServiceLinks false")
    check(len(pod["containers"]) == 1, "one container")
    c = pod["containers"][0]
    sc = c.get("securityContext", {})
    check(sc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem")
    check(sc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation false")
    check(sc.get("capabilities", {}).get("drop") == ["ALL"], "capabilities drop ALL")
    check(not sc.get("privileged"), "not privileged")
    check("limits" in c.get("resources", {}), "resource limits set")

    env = {e["name"]: e for e in c.get("env", [])}
    for n, fp in (("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace"),
                  ("POD_UID", "metadata.uid")):
        check(env.get(n, {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == fp,
              f"{n} from the downward API ({fp})")
    check("TALOS_TOKEN" not in env, "the token must not be an env var (TOKEN_PATH or CA_SECRET)")
    ports = {p["name"]: p for p in c["ports"]}
    http_addr = env.get("HTTP_ADDR", {}).get("value", "")
    check(http_addr == f":{ports['http']['containerPort']}", "HTTP_ADDR matches the http port")
    check(env.get("PORT", {}).get("value") == str(ports["grpc"]["containerPort"]), "PORT matches the grpc port")
    check(c.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz", "liveness on /healthz")
    check(c.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz", "readiness on /readyz")
    check(c.get("startupProbe", {}).get("httpGet", {}).get("port") == "http", "startup probe on http")

    automount = pod.get("automountServiceAccountToken")
    roles = by_kind.get("Role", [])
    bindings = by_kind.get("RoleBinding", [])
    sa = pod.get("serviceAccountName")

    def role_rules(ns):
        return [r for role in roles if role["metadata"]["namespace"] == ns for r in role["rules"]]

    api_mode = "CA_SECRET" in env
    if api_mode:
        check("CA_CERT_PATH" not in env, "api mode sets no file paths")
        check(automount is True, "api mode mounts the service-account token")
        for var in ("CA_SECRET", "TLS_SECRET"):
            ns, _, name = env[var]["value"].partition("/")
            check(bool(ns and name), f"{var} is namespace/name")
            rules = [r for r in role_rules(ns) if "secrets" in r.get("resources", [])]
            check(any(name in r.get("resourceNames", []) and
                      sorted(r["verbs"]) == ["get", "list", "watch"] for r in rules),
                  f"a Role in {ns} allows get/list/watch on Secret {name} by name")
            check(any(b["metadata"]["namespace"] == ns and
                      any(s["name"] == sa and s["namespace"] == release_ns for s in b["subjects"])
                      for b in bindings), f"a RoleBinding in {ns} binds the ServiceAccount")
    else:
        check("CA_CERT_PATH" in env and "TOKEN_PATH" in env and "TLS_CERT_PATH" in env,
              "files mode sets CA_CERT_PATH, TOKEN_PATH, TLS_CERT_PATH")
        mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
        check("/etc/talos-ca" in mounts and "/etc/talos-server-crt" in mounts,
              "files mode mounts /etc/talos-ca and /etc/talos-server-crt")
        check(all("subPath" not in m for m in mounts.values()), "no subPath (it never updates)")
        check(all(m.get("readOnly") for m in mounts.values()), "mounts are read-only")
        for r in (r for role in roles for r in role["rules"]):
            check("secrets" not in r.get("resources", []), "files mode grants no Secret access")

    # Every rule is least privilege: no wildcards, secrets always by name.
    for role in roles:
        for r in role["rules"]:
            check("*" not in r["verbs"] and "*" not in r["resources"], "no wildcard RBAC")
            if "secrets" in r["resources"]:
                check(bool(r.get("resourceNames")), "Secret access is restricted by resourceNames")
            if "events" in r["resources"]:
                check(sorted(r["verbs"]) == ["create", "patch"], "events: create and patch only")
    if automount:
        check(any("events" in r["resources"] for r in role_rules(release_ns)),
              "a token is mounted, so Events must be allowed in the release namespace")
    else:
        check(not roles, "no token mounted, so no Role")

    if w["kind"] == "DaemonSet":
        check(ports["grpc"].get("hostPort") == 50001 or "hostPort" not in ports["grpc"],
              "hostPort is 50001 when set")
        check("node-role.kubernetes.io/control-plane" in pod.get("nodeSelector", {}),
              "DaemonSet selects control-plane nodes")
        check(any(t.get("key") == "node-role.kubernetes.io/control-plane" for t in pod.get("tolerations", [])),
              "DaemonSet tolerates the control-plane taint")
    else:
        check("hostPort" not in ports["grpc"], "no hostPort in deployment mode")

    for svc in by_kind.get("Service", []):
        sel = svc["spec"]["selector"]
        labels = w["spec"]["template"]["metadata"]["labels"]
        check(all(labels.get(k) == v for k, v in sel.items()), f"Service {svc['metadata']['name']} selects the Pods")
        for p in svc["spec"]["ports"]:
            check(p["targetPort"] in ports, f"Service port targets a named container port ({p['targetPort']})")
            if p["name"] == "grpc":
                check(svc["spec"]["type"] in ("LoadBalancer", "ClusterIP", "NodePort"), "Service type")
            else:
                check(svc["spec"]["type"] == "ClusterIP", "the metrics port is only on a ClusterIP Service")

    certs = by_kind.get("Certificate", [])
    issuers = by_kind.get("Issuer", [])
    for cert in certs:
        s = cert["spec"]
        check(len(s.get("ipAddresses", [])) >= 1, "Certificate has IP SANs")
        check(s.get("isCA") is False, "serving cert is not a CA")
        check("server auth" in s["usages"], "serving cert has server auth")
        if s["privateKey"]["algorithm"] != "RSA":
            check("key encipherment" not in s["usages"], "no keyEncipherment for Ed25519/ECDSA keys")
        ref = s["issuerRef"]
        if ref["kind"] == "Issuer":
            match = [i for i in issuers if i["metadata"]["name"] == ref["name"]
                     and i["metadata"]["namespace"] == cert["metadata"]["namespace"]]
            check(bool(match), "issuerRef names the rendered Issuer in the Certificate's namespace")
        if api_mode:
            check(env["TLS_SECRET"]["value"] == f"{cert['metadata']['namespace']}/{s['secretName']}",
                  "TLS_SECRET is the Certificate's Secret")
        else:
            vols = {v["name"]: v for v in pod.get("volumes", [])}
            check(vols.get("serving-cert", {}).get("secret", {}).get("secretName") == s["secretName"],
                  "the mounted serving-cert volume is the Certificate's Secret")
    for i in issuers:
        if api_mode:
            check(env["CA_SECRET"]["value"] == f"{i['metadata']['namespace']}/{i['spec']['ca']['secretName']}",
                  "the Issuer uses the CA Secret the daemon reads")

    labels = w["spec"]["template"]["metadata"]["labels"]
    if w["kind"] == "Deployment":
        check(pod.get("nodeSelector", {}).get("kubernetes.io/os") == "linux", "Pods select Linux nodes")
    for tsc in pod.get("topologySpreadConstraints", []):
        ml = tsc.get("labelSelector", {}).get("matchLabels", {})
        check(bool(ml) and all(labels.get(k) == v for k, v in ml.items()),
              "each topologySpreadConstraint selects the chart's Pods")
    for d in docs:
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-extra-config"):
            continue  # an extraObjects entry: the user's object, the user's labels
        check(d["metadata"].get("labels", {}).get("app.kubernetes.io/managed-by") == "Helm",
              f"{d['kind']} {d['metadata']['name']} carries the chart's labels")

    # The helm test hook: a worker-like request on the Certificate's IP SANs with the daemon's CA Secret.
    tests = [d for d in by_kind.get("Pod", []) if d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
    for t in tests:
        tc = t["spec"]["containers"][0]
        args = tc.get("args", [])
        check(args[:1] == ["request"], "the test Pod runs `talos-csr-signer request`")
        check(t["spec"].get("restartPolicy") == "Never", "the test Pod does not restart")
        check(t["spec"].get("automountServiceAccountToken") is False, "the test Pod mounts no API token")
        check(tc.get("securityContext", {}).get("readOnlyRootFilesystem") is True, "the test Pod is read-only")
        eps = [args[i + 1] for i, a in enumerate(args) if a == "--endpoint"]
        check(bool(eps), "the test Pod names at least one endpoint")
        sans = [ip for cert in certs for ip in cert["spec"].get("ipAddresses", [])]
        for ep in eps:
            host = ep.rsplit(":", 1)[0].strip("[]")
            check(not certs or host in sans, f"test endpoint {ep} is an IP SAN of the serving certificate")
        vols = {v["name"]: v for v in t["spec"]["volumes"]}
        ca_name = (env["CA_SECRET"]["value"].partition("/")[2] if api_mode else
                   {v["name"]: v for v in pod.get("volumes", [])}["talos-ca"]["secret"]["secretName"])
        check(vols.get("talos-ca", {}).get("secret", {}).get("secretName") == ca_name,
              "the test Pod mounts the CA Secret the daemon uses")
        check({"--ca", "--token-file"} <= set(args), "the test Pod verifies against the CA, with the token")

    for np in by_kind.get("NetworkPolicy", []):
        check(np["spec"]["podSelector"]["matchLabels"] == w["spec"]["selector"]["matchLabels"],
              "NetworkPolicy selects the Pods")
        for rule in np["spec"].get("ingress", []):
            for p in rule.get("ports", []):
                check(p["port"] in ports, f"NetworkPolicy ingress port {p['port']} is a named container port")
        check(bool(np["spec"].get("egress")) == bool(automount),
              "NetworkPolicy egress (to the API server) exactly when the daemon talks to it")

    for pr in by_kind.get("PrometheusRule", []):
        rules = [r for g in pr["spec"]["groups"] for r in g["rules"]]
        check(len(rules) >= 5, "PrometheusRule has the documented alerts")
        for r in rules:
            check(f'namespace="{release_ns}"' in r["expr"], f"{r.get('alert')}: scoped to the release namespace")

    for pdb in by_kind.get("PodDisruptionBudget", []):
        check(w["kind"] == "Deployment", "PDB only with a Deployment")
        check(pdb["spec"]["selector"]["matchLabels"] == w["spec"]["selector"]["matchLabels"],
              "PDB selects the Pods")


if __name__ == "__main__":
    main()
    for p in problems:
        print(f"  invariant failed: {p}")
    sys.exit(1 if problems else 0)
