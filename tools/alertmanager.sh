#!/usr/bin/env bash
# Unpacks Debian's prometheus-alertmanager package (prometheus-alertmanager and amtool) into the
# directory given, never installing it: the installed package starts a server on every
# interface (its init script), with clustering on 0.0.0.0:9094.
#
# Debian's build reads files from the system's /usr/share/prometheus/alertmanager at run time,
# a path compiled in (no flag): its notification templates (default.tmpl and email.tmpl, without
# which it refuses its configuration and exits) and, in place of a web application (its Elm UI
# needs a compiler and packages Debian does not have), the page of no-ui/ (what the UI would be,
# and the API's handlers). harness/alertmanager.py runs it in a mount namespace of its own where
# this directory's usr/share lies over the system's (an overlay seen by that process alone:
# nothing is written to /usr), and points --web.ui-path at no-ui/.
set -euo pipefail

dest=$(realpath -m "$1")
"$(dirname "$0")/debian-unpack.sh" "$dest" prometheus-alertmanager
for file in default.tmpl email.tmpl no-ui/index.html; do
  test -f "$dest/usr/share/prometheus/alertmanager/$file"
done
# Newer than this script (make's prerequisite): dpkg-deb keeps the package's dates.
touch "$dest/usr/bin/prometheus-alertmanager" "$dest/usr/bin/amtool"
