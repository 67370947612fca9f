# Shell helpers shared by the test and load scripts (source it; it runs nothing).

# A TCP port on 127.0.0.1 that is free right now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Writes DIR/sluice.toml for a throw-away Sluice: listeners on 127.0.0.1 PORT and ADMIN,
# catalog DIR/catalog.toml, log DIR/log with durability os; EXTRA (TOML) is appended.
write_sluice_config() {
  local dir=$1 port=$2 admin=$3 extra=${4:-}
  cat > "$dir/sluice.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
admin_listen = "127.0.0.1:$admin"
[catalog]
source = "file"
path = "$dir/catalog.toml"
[log]
dir = "$dir/log"
durability = "os"
$extra
TOML
}

# Writes DIR/catalog.toml for the delivery load scripts: source `bench` (key
# `bench-key`) and webhook destination `hook` to 127.0.0.1:PORT/hook, batches of 100
# after at most 20 ms, back-off from INITIAL to MAX ms (default 20 and 100):
# write_hook_catalog DIR PORT [INITIAL MAX]
write_hook_catalog() {
  local dir=$1 port=$2 initial=${3:-20} max=${4:-100}
  cat > "$dir/catalog.toml" <<TOML
[[sources]]
id = "bench"
write_keys = [{ key = "bench-key" }]
[[destinations]]
id = "hook"
type = "webhook"
sources = ["bench"]
retry = { initial_backoff_ms = $initial, max_backoff_ms = $max }
settings = { url = "http://127.0.0.1:$port/hook", batch_size = 100, batch_ms = 20 }
TOML
}

# Makes sure the virtualenv VENV has EXE in its bin/, installing PACKAGES (pinned pip
# specs) into it from PyPI when not: python_tool VENV EXE PACKAGE...
python_tool() {
  local venv=$1 exe=$2
  shift 2
  if [ ! -x "$venv/bin/$exe" ]; then
    echo "installing $* into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "$@"
  fi
}
