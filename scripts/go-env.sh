# Sourced by the scripts that build Go programs (the Pulumi CLI, the language hosts, the
# conformance clients): one cache directory outside the repository, and one Go module and build
# cache inside it, so every build reuses what another one fetched or compiled.
cache_root="${ECI_IMAGECACHE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/eci-imagecache}"
export GOMODCACHE="${GOMODCACHE:-$cache_root/go/mod}"
export GOCACHE="${GOCACHE:-$cache_root/go/build}"
export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED=0
build_flags=(-trimpath -tags osusergo,grpcnotrace)
