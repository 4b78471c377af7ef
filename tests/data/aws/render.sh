#!/usr/bin/env bash
# Renders the real AWS Lambda event payloads in this folder with the AWS SAM CLI.
# CI does not run this; the JSON files are committed. To re-render (works offline, ~1 min install):
#
#   python3 -m venv /tmp/samvenv && /tmp/samvenv/bin/pip install aws-sam-cli
#   SAM=/tmp/samvenv/bin/sam tests/data/aws/render.sh
#
# Files named *_sam*.json are `sam local generate-event` output as is. The others are a sam render
# followed by a small, commented patch (python3 below) where the template cannot express a case
# or differs from what AWS sends; every patch says why.
set -euo pipefail
export SAM_CLI_TELEMETRY=0
SAM="${SAM:-/tmp/samvenv/bin/sam}"
OUT="$(cd "$(dirname "$0")" && pwd)"
gen() { local out="$1"; shift; "$SAM" local generate-event "$@" > "$OUT/$out"; }

# patch FILE: run python (stdin) with `e` = the loaded event; it is written back afterwards.
patch() {
  python3 -c '
import base64, json, sys, urllib.parse
path = sys.argv[1]
e = json.load(open(path, encoding="utf-8"))
exec(sys.stdin.read())
with open(path, "w", encoding="utf-8") as f:
    json.dump(e, f, indent=2, ensure_ascii=False)
    f.write("\n")
' "$OUT/$1"
}

# ---- API Gateway REST API (payload 1.0) --------------------------------------------------------
gen rest_sam.json apigateway aws-proxy                      # POST /path/to/resource, stage prod, base64 body

gen rest_unicode.json apigateway aws-proxy --method GET --path 'hello/caf%C3%A9' \
    --querystringparameters '{"times": "2"}' --body ''
patch rest_unicode.json <<'PY'
# the template keeps multiValueQueryStringParameters at {"foo": ["bar"]} whatever
# --querystringparameters says; AWS always sends both maps with the same keys.
e["multiValueQueryStringParameters"] = {k: [v] for k, v in e["queryStringParameters"].items()}
PY

gen rest_headers.json apigateway aws-proxy --method GET --path headers \
    --querystringparameters '{"a": "2", "b": "x y"}' --body ''
patch rest_headers.json <<'PY'
# repeated query key and header: the single-value maps keep the last value, multiValue* all of them
# (values decoded); a Cookie header, which REST APIs pass on as a header.
e["multiValueQueryStringParameters"] = {"a": ["1", "2"], "b": ["x y"]}
e["headers"]["X-Tag"] = "two"
e["multiValueHeaders"]["X-Tag"] = ["one", "two"]
e["headers"]["Cookie"] = "session=abc%20def; theme=dark"
e["multiValueHeaders"]["Cookie"] = ["session=abc%20def; theme=dark"]
PY

gen rest_binary.json apigateway aws-proxy --method POST --path echo/bytes --body 'x'
patch rest_binary.json <<'PY'
# a binary request body (the CLI takes text only): all 256 byte values, base64 as AWS sends them.
e["body"] = base64.b64encode(bytes(range(256))).decode()
for h in ("headers", "multiValueHeaders"):
    e[h]["Content-Type"] = "application/octet-stream" if h == "headers" else ["application/octet-stream"]
PY

gen rest_custom_domain.json apigateway aws-proxy --method GET --path 'v1/hello/world' \
    --resource '/hello/{name}' --querystringparameters '{}' --body ''
patch rest_custom_domain.json <<'PY'
# through a custom domain with base path mapping "v1" (to stage prod): the base path is in both
# path and requestContext.path, the stage in neither; resource and pathParameters are the route.
e["requestContext"]["path"] = e["path"]
e["requestContext"]["domainName"] = "api.example.com"
e["headers"]["Host"] = "api.example.com"
e["multiValueHeaders"]["Host"] = ["api.example.com"]
e["pathParameters"] = {"name": "world"}
e["queryStringParameters"] = e["multiValueQueryStringParameters"] = None
PY

gen rest_custom_domain_root.json apigateway aws-proxy --method GET --path 'hello/world' \
    --resource '/hello/{name}' --querystringparameters '{}' --body ''
patch rest_custom_domain_root.json <<'PY'
# a custom domain mapped at its root (no base path): no stage and no prefix anywhere.
e["requestContext"]["path"] = e["path"]
e["requestContext"]["domainName"] = "api.example.com"
e["headers"]["Host"] = "api.example.com"
e["multiValueHeaders"]["Host"] = ["api.example.com"]
e["pathParameters"] = {"name": "world"}
e["queryStringParameters"] = e["multiValueQueryStringParameters"] = None
PY

# ---- API Gateway HTTP API (payload 2.0) --------------------------------------------------------
gen http_sam.json apigateway http-api-proxy                 # POST /path/to/resource, $default, cookies

gen http_stage.json apigateway http-api-proxy --stage dev --method GET --path 'hello/café' --body ''
patch http_stage.json <<'PY'
# on the execute-api domain a named stage leads rawPath and requestContext.http.path
# (the template leaves it out); HTTP APIs deliver the path percent-decoded.
for holder in (e, e["requestContext"]["http"]):
    key = "rawPath" if holder is e else "path"
    holder[key] = "/dev" + holder[key]
e["rawQueryString"] = "times=2"
e["queryStringParameters"] = {"times": "2"}
e["cookies"] = ["session=abc", "theme=dark"]
PY

# ---- Lambda Function URL (payload 2.0) ---------------------------------------------------------
# There is no Function URL template. Function URLs send payload format 2.0 with requestContext
# domainName "<url-id>.lambda-url.<region>.on.aws", apiId/domainPrefix "<url-id>", routeKey and
# stage "$default", no pathParameters/stageVariables, and requestContext.authorizer only with
# AWS_IAM auth (AWS Lambda developer guide, "Invoking Lambda function URLs"). Derived from the
# http-api-proxy render accordingly; the path stays percent-encoded as sent.
gen function_url.json apigateway http-api-proxy --method GET --path 'files/a%20b/caf%C3%A9.csv'
patch function_url.json <<'PY'
url_id = "a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6"
rc = e["requestContext"]
rc.update(apiId=url_id, domainName=f"{url_id}.lambda-url.us-east-1.on.aws", domainPrefix=url_id, stage="$default", routeKey="$default")
for key in ("authentication", "authorizer"):
    rc.pop(key, None)
for key in ("pathParameters", "stageVariables"):
    e.pop(key, None)
e["headers"]["host"] = rc["domainName"]
PY

# ---- Application Load Balancer -----------------------------------------------------------------
gen alb_sam.json alb request                                # POST /path/to/resource, single-value mode

gen alb_query.json alb request --method GET --path headers --body ''
patch alb_query.json <<'PY'
# ALB passes the query as sent, still percent-encoded ('+' and %20 alike), and does not decode it.
e["queryStringParameters"] = {"q": "a%20b", "name": "caf%C3%A9", "plus": "x+y"}
e["isBase64Encoded"] = False
PY

gen alb_multi.json alb request --method GET --path headers --body ''
patch alb_multi.json <<'PY'
# multi-value headers on the target group: ALB sends multiValueHeaders and
# multiValueQueryStringParameters instead of headers and queryStringParameters.
e["multiValueHeaders"] = {k: [v] for k, v in e.pop("headers").items()}
e["multiValueHeaders"]["x-tag"] = ["one", "two"]
e["multiValueHeaders"]["cookie"] = ["theme=dark"]
e.pop("queryStringParameters")
e["multiValueQueryStringParameters"] = {"a": ["1", "2"], "q": ["x%2By"]}
e["isBase64Encoded"] = False
PY

# ---- S3, SQS, EventBridge ----------------------------------------------------------------------
gen s3_put_sam.json s3 put --bucket nubes-data --key 'incoming/my report été.csv'
gen s3_put.json s3 put --bucket nubes-data --key 'incoming/my report été.csv'
patch s3_put.json <<'PY'
# the template escapes the key with %20 for a space; S3 itself form-encodes it, a space as '+'.
obj = e["Records"][0]["s3"]["object"]
obj["key"] = urllib.parse.quote_plus(urllib.parse.unquote(obj["key"]), safe="/")
PY

gen sqs_sam.json sqs receive-message --queue-name orders --body 'Hello from SQS!'
gen sqs_batch.json sqs receive-message --queue-name orders --body 'order 1'  # the template does not escape quotes: JSON bodies are patched in
patch sqs_batch.json <<'PY'
# a batch of three; the second fails in the tests, the third carries message attributes.
first = e["Records"][0]
records = []
for i, body in enumerate(['{"order": 1}', '{"order": 2, "fail": true}', '{"order": 3}'], 1):
    r = json.loads(json.dumps(first))
    r["messageId"] = f"00000000-0000-4000-8000-00000000000{i}"
    r["body"] = body
    records.append(r)
records[2]["messageAttributes"] = {
    "tenant": {"stringValue": "acme", "stringListValues": [], "binaryListValues": [], "dataType": "String"},
    "blob": {"binaryValue": "AAE=", "stringListValues": [], "binaryListValues": [], "dataType": "Binary"},
}
e["Records"] = records
PY

gen schedule.json cloudwatch scheduled-event --rule nightly-rollup
echo "rendered into $OUT"
