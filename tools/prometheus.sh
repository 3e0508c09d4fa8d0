#!/usr/bin/env bash
# Unpacks Debian's prometheus package (prometheus and promtool) into the directory given, never
# installing it: the installed package starts a server on every interface (its init script).
#
# Debian's build serves its web UI from files, not from the binary: its templates and static
# files under usr/share/prometheus/web (read from --web.local-assets, by default the system's
# /usr/share/prometheus/web/, hence "error reading base template" and HTTP 500 on /graph for a
# copy unpacked elsewhere), whose JavaScript, CSS and fonts are relative symbolic links into
# ../../../javascript and ../../../fonts-glyphicons: the packages below, which the prometheus
# package depends on for them, are unpacked beside it so that every link resolves inside the
# directory given. harness/prometheus.py passes --web.local-assets (and the console flags).
set -euo pipefail

dest=$(realpath -m "$1")
# The packages whose files the web UI's links point to (`apt-cache depends prometheus`, and
# theirs: libjs-rickshaw needs libjs-d3, libjs-bootstrap4 libjs-popper.js).
packages=(prometheus libjs-bootstrap4 libjs-eonasdan-bootstrap-datetimepicker libjs-jquery
  libjs-jquery-hotkeys libjs-moment libjs-moment-timezone libjs-mustache libjs-popper.js
  libjs-rickshaw libjs-d3 fonts-glyphicons-halflings)
"$(dirname "$0")/debian-unpack.sh" "$dest" "${packages[@]}"
# Debian's libjs-popper.js (1.16.1+ds-6) puts the ES module build at popper.js/popper.min.js:
# loaded as the plain script the pages ask for, it fails ("Unexpected token 'export'") and
# Bootstrap's tooltips with it. The pages get the UMD build of the same version instead.
test -f "$dest/usr/share/javascript/popper.js/umd/popper.min.js"
ln -sfn ../../../javascript/popper.js/umd "$dest/usr/share/prometheus/web/static/popper.js"
# Every asset the UI links to must be there (a dangling link is a 404 in the browser).
dangling=$(find "$dest/usr/share/prometheus/web" -xtype l)
if [ -n "$dangling" ]; then
  echo "error: web assets missing after unpacking: $dangling" >&2
  exit 1
fi
# Newer than this script (make's prerequisite): dpkg-deb keeps the package's dates.
touch "$dest/usr/bin/prometheus" "$dest/usr/bin/promtool"
