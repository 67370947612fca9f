# Sourced by the browser scripts: Debian's Chromium and the npm packages, installed when
# missing. Sets `chromium`; expects `here` (this directory) and `root`, `bin`.
chromium=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
  echo "browser: installing Debian's chromium"
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null ||
    { $sudo_cmd apt-get update -q >/dev/null && $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }
fi
echo "browser: installing the test packages (npm ci)"
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
[ -x "$bin" ] || (cd "$root" && cargo build --quiet)
