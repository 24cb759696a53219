# Helpers the benchmark scripts share; sourced, not run.

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Nanoseconds since the epoch.
now() { date +%s%N; }
# Seconds between two `now`s: seconds START END [DECIMALS, default 3].
seconds() { python3 -c "print(f'{($2 - $1) / 1e9:.${3:-3}f}')"; }
fail() { echo "FAILED: $*" >&2; exit 1; }
