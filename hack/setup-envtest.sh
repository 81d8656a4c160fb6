#!/usr/bin/env bash
# Builds the envtest control plane (kube-apiserver and etcd) from the Go module proxy, because these
# machines cannot download the prebuilt envtest archives. The binaries land in the folder that
# setup-envtest itself uses, so a later run (or setup-envtest) finds and reuses them.
#
# Prints the asset folder on stdout; use it as KUBEBUILDER_ASSETS. Progress goes to stderr.
set -euo pipefail

KUBE_VERSION="${ENVTEST_K8S_VERSION:-1.37.2}"
ETCD_VERSION="${ENVTEST_ETCD_VERSION:-3.6.16}"
STAGING_VERSION="v0.${KUBE_VERSION#1.}"

os="$(go env GOOS)"
arch="$(go env GOARCH)"
data_home="${XDG_DATA_HOME:-$HOME/.local/share}"
assets="${ENVTEST_ASSETS_DIR:-$data_home/kubebuilder-envtest/k8s/${KUBE_VERSION}-${os}-${arch}}"

log() { printf 'setup-envtest: %s\n' "$*" >&2; }

if [[ -x "$assets/kube-apiserver" && -x "$assets/etcd" ]]; then
	echo "$assets"
	exit 0
fi

mkdir -p "$assets"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export GOFLAGS="-mod=mod"
export CGO_ENABLED=0

if [[ ! -x "$assets/kube-apiserver" ]]; then
	log "building kube-apiserver v${KUBE_VERSION} from source (first run only; about 6 minutes on 2 cores)"
	mkdir -p "$work/apiserver"
	pushd "$work/apiserver" >/dev/null
	go mod init envtest.local/apiserver >/dev/null 2>&1
	# k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with local folders;
	# point each one at its published release instead.
	kube_gomod="$(go mod download -json "k8s.io/kubernetes@v${KUBE_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
	replaces=()
	while read -r mod; do
		replaces+=("-replace=${mod}=${mod}@${STAGING_VERSION}")
	done < <(sed -n 's#^[[:space:]]*\(k8s.io/[^[:space:]]*\) => ./staging/.*#\1#p' "$kube_gomod")
	go mod edit "-require=k8s.io/kubernetes@v${KUBE_VERSION}" "${replaces[@]}"
	cat >tools.go <<'GO'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
GO
	go mod tidy >&2
	go build -trimpath -ldflags="-s -w" -o "$assets/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver
	mv "$assets/kube-apiserver.tmp" "$assets/kube-apiserver"
	popd >/dev/null
fi

if [[ ! -x "$assets/etcd" ]]; then
	log "building etcd v${ETCD_VERSION} from source (first run only)"
	mkdir -p "$work/etcd"
	pushd "$work/etcd" >/dev/null
	go mod init envtest.local/etcd >/dev/null 2>&1
	go mod edit "-require=go.etcd.io/etcd/server/v3@v${ETCD_VERSION}"
	cat >tools.go <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
	go mod tidy >&2
	go build -trimpath -ldflags="-s -w" -o "$assets/etcd.tmp" go.etcd.io/etcd/server/v3
	mv "$assets/etcd.tmp" "$assets/etcd"
	popd >/dev/null
fi

if [[ ! -e "$assets/kubectl" ]] && command -v kubectl >/dev/null 2>&1; then
	ln -s "$(command -v kubectl)" "$assets/kubectl"
fi

log "control plane binaries ready in $assets"
echo "$assets"
