#!/usr/bin/env bash
# Sets up a fresh clone and runs the bot: gunicorn on 127.0.0.1:8000 and one rq worker with the
# scheduler. SQLite and the local Redis by default (see README, "Settings"). Ctrl+C stops both;
# the worker stops gracefully.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh

ensure_venv requirements.txt
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
ensure_redis "$REDIS_URL"

.venv/bin/python manage.py migrate --noinput
.venv/bin/python manage.py collectstatic --noinput -v 0

if [ -z "${MESSENGER_APP_SECRET:-}" ]; then
  echo "Note: MESSENGER_APP_SECRET is not set: the webhook refuses every POST until it is. 'python manage.py messenger_simulate \"hi\"' works without it."
fi
if [ -z "${MESSENGER_PAGE_ACCESS_TOKEN:-}" ]; then
  echo "Note: MESSENGER_PAGE_ACCESS_TOKEN is not set: replies are dry-run (logged by the worker, not sent)."
fi

.venv/bin/python manage.py rqworker messenger_fast messenger_slow --with-scheduler &
worker=$!
trap 'kill -TERM "$worker" 2>/dev/null; wait "$worker" 2>/dev/null' EXIT INT TERM

echo "Webhook: http://127.0.0.1:8000/messenger/v2/webhook   Health: http://127.0.0.1:8000/healthz   Admin: http://127.0.0.1:8000/admin/"
# The access log shows paths without query strings: Facebook's verification puts hub.verify_token there.
.venv/bin/gunicorn chatbot.wsgi --bind 127.0.0.1:8000 --workers "${WEB_CONCURRENCY:-2}" \
  --access-logfile - --access-logformat '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms' &
web=$!
trap 'kill -TERM "$web" "$worker" 2>/dev/null; wait "$web" "$worker" 2>/dev/null' EXIT INT TERM
wait "$web"
