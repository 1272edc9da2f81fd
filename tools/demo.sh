#!/bin/sh
# demo.sh BUILD_DIR [--keep] - run smisd on the embedded default (SQLite)
# with both simulators on loopback and show messages flowing through the
# strategies. With --keep they go on running afterwards, for the README's
# curl examples, until Ctrl-C. Started processes are stopped by PID on exit.
set -eu
build=$(cd "${1:-build}" && pwd)
keep=${2:-}
case "$keep" in
"" | --keep) ;;
*) echo "usage: demo.sh BUILD_DIR [--keep]" >&2; exit 2 ;;
esac
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/smis-demo-XXXXXX)
pids=""
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	for p in $pids; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

KEY=demo-key-0123456789
API=http://127.0.0.1:8080

# The demo configuration is conf/smisd.conf with the plugin folder and the
# store pointed at this build and a scratch folder.
sed -e "s#^plugin_dir = .*#plugin_dir = \"$build/plugin-dir\";#" \
    -e "s#path = \"../smis-demo.db\";#path = \"$work/smis.db\";#" \
    "$src/conf/smisd.conf" > "$work/smisd.conf"

"$build/tools/govapp-sim/govapp-sim" --listen 127.0.0.1:18081 --token govapp-demo-token \
	--seed "$src/conf/demo-citizens.json" \
	--callback-url "$API/v1/callbacks/govapp" --callback-secret govapp-demo-callback-secret \
	> "$work/govapp-sim.log" 2>&1 &
pids="$pids $!"
"$build/tools/ringring-sim/ringring-sim" --listen 127.0.0.1:18082 --api-key ringring-demo-key \
	> "$work/ringring-sim.log" 2>&1 &
pids="$pids $!"
"$build/smisd" --check-config -c "$work/smisd.conf"
"$build/smisd" -c "$work/smisd.conf" 2> "$work/smisd.log" &
pids="$pids $!"

i=0
until curl -fsS "$API/healthz" > /dev/null 2>&1; do
	i=$((i + 1))
	[ $i -lt 100 ] || { echo "smisd did not start:"; cat "$work/smisd.log"; exit 1; }
	sleep 0.1
done

send() { # send TITLE RECIPIENT STRATEGY [FORMAT BODY]
	echo
	echo "== $1: strategy $3 to $2"
	body=$(printf '{"recipient":"%s","strategy":"%s","reference":"demo-%s","content":{"nl":{"title":"Uw document","body":"%s","format":"%s"},"fr":{"title":"Votre document","body":"Votre document est prêt.","format":"text"}}}' \
		"$2" "$3" "$(date +%s%N)" "${5:-Uw document is klaar.}" "${4:-text}")
	curl -sS -X POST "$API/v1/messages" -H "Authorization: Bearer $KEY" \
		-H 'Content-Type: application/json' -d "$body" | tee "$work/last.json" | python3 -m json.tool
}

send "Citizen with GovApp" "0470 00 00 01" govapp_first html '<p>Uw <b>document</b> is klaar. <a href=\"https://example.be/doc\">Bekijk</a><script>alert(1)</script></p>'
id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$work/last.json")
notif=$(python3 -c 'import json,sys; print([a for a in json.load(open(sys.argv[1]))["attempts"] if a["operation"]=="send"][0]["provider_reference"])' "$work/last.json")
send "Citizen with GovApp, two devices, French" "+32 470 00 00 02" govapp_first
send "Citizen with notifications off" "+32470000003" govapp_first
send "Citizen without GovApp" "+32470000004" govapp_first
send "Same citizen, GovApp only" "+32470000004" govapp_only
send "Both channels" "+32470000001" govapp_and_sms
send "Chain of two steps (config only)" "+32470000004" app_then_sms

echo
echo "== GovApp backend down: the strategy falls back to SMS"
curl -fsS -X POST http://127.0.0.1:18081/_sim/faults -d '{"http_status":503}' > /dev/null
send "GovApp failing" "+32470000001" govapp_first
curl -fsS -X DELETE http://127.0.0.1:18081/_sim/faults > /dev/null

echo
echo "== Errors are problem+json with a stable code"
curl -sS -X POST "$API/v1/messages" -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
	-d '{"recipient":"+32 2 123 45 67","content":{"nl":{"title":"t","body":"b"}}}' | python3 -m json.tool
curl -sS -X POST "$API/v1/messages" -H "Authorization: Bearer wrong" -H 'Content-Type: application/json' \
	-d '{}' | python3 -m json.tool

echo
echo "== What the citizen's device decrypted (govapp-sim inbox +32470000001)"
"$build/tools/govapp-sim/govapp-sim" inbox +32470000001 --url http://127.0.0.1:18081 || true

echo
echo "== The citizen opens it: the device reports delivered, then read (signed callbacks to SMIS)"
"$build/tools/govapp-sim/govapp-sim" mark --url http://127.0.0.1:18081 "$notif" an-android delivered
"$build/tools/govapp-sim/govapp-sim" mark --url http://127.0.0.1:18081 "$notif" an-android read
i=0
until curl -fsS "$API/v1/messages/$id" -H "Authorization: Bearer $KEY" | grep -q '"status":"read"'; do
	i=$((i + 1))
	[ $i -lt 50 ] || break
	sleep 0.1
done
echo
echo "== Status lookup of the first message: GET /v1/messages/$id"
curl -sS "$API/v1/messages/$id" -H "Authorization: Bearer $KEY" | python3 -m json.tool

echo
echo "== smisd log (JSON lines; no bodies, no full numbers)"
cat "$work/smisd.log"

if [ "$keep" = --keep ]; then
	echo
	echo "== smisd ($API, API key $KEY) and both simulators keep running; Ctrl-C stops them"
	wait
fi
