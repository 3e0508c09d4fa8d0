#!/bin/sh
# The official image's default user, from the environment, written where only rabbitmq reads.
set -eu
umask 077
cat > "$RABBITMQ_CONFIG_FILE" <<CONF
default_user = ${RABBITMQ_DEFAULT_USER:-guest}
default_pass = ${RABBITMQ_DEFAULT_PASS:-guest}
default_user_tags.administrator = true
loopback_users = none
disk_free_limit.absolute = 50000000
CONF
echo "[]." > "$RABBITMQ_ENABLED_PLUGINS_FILE"
exec "$@"
