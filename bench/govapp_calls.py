"""govapp_calls.py GOVAPP_URL LOOKUP_FILE SEND_FILE - for bench/run.sh.

Reads the last lookup and send that govapp-sim recorded (GET /_sim/requests)
after run.sh sent one govapp_first message through smisd, and writes them as
post.lua call files: "METHOD PATH" on the first line, the JSON body after it,
with the phone number as {phone} and the message id as {message_id}. The
GovApp baseline then replays exactly what smisd sends upstream, one citizen
after the other (the envelope was sealed for the first citizen's device, so
the simulator's device fails to open it for the others: the same work for
the simulator, answered 202 all the same).
"""
import json
import sys
import urllib.request


def main():
    url, lookup_file, send_file = sys.argv[1:4]
    with urllib.request.urlopen(url + "/_sim/requests", timeout=10) as r:
        recs = json.load(r)
    if isinstance(recs, dict):
        recs = recs.get("requests", [])
    found = {}
    for rec in recs:
        if rec["method"] == "POST" and rec["path"] in ("/v1/citizens/lookup", "/v1/notifications"):
            found[rec["path"]] = rec
    for path, out in (("/v1/citizens/lookup", lookup_file), ("/v1/notifications", send_file)):
        rec = found.get(path)
        if not rec or not isinstance(rec.get("body"), dict):
            sys.exit("govapp_calls.py: govapp-sim recorded no %s call" % path)
        body = rec["body"]
        body["phone"] = "{phone}"
        if "message_id" in body:
            body["message_id"] = "{message_id}"
        with open(out, "w") as f:
            f.write("%s %s\n%s" % (rec["method"], path, json.dumps(body, separators=(",", ":"))))


if __name__ == "__main__":
    main()
