#!/bin/sh
# shellcheck disable=SC2015 # "[ ok ] && check || die" is meant: die when either fails
# Object-store set-up for Tributary, for ANY S3-compatible endpoint (SeaweedFS in the local stack,
# MinIO in compose): creates the buckets of minio/buckets.txt, then proves that the application's
# credentials can PUT, GET, LIST and DELETE in each of them. Idempotent. POSIX sh; the MinIO path
# needs nothing but `mc` and shell built-ins, so it runs in the minio/mc image.
#
#   S3_ENDPOINT          default http://127.0.0.1:9000
#   S3_REGION            default us-east-1
#   S3_ADMIN_ACCESS_KEY  / S3_ADMIN_SECRET_KEY  an identity allowed to create buckets
#                        (default: the application's own keys)
#   S3_ACCESS_KEY / S3_SECRET_KEY               the application's keys (tributary / tributary-secret)
#   MINIO_ADMIN=1        (compose) work through `mc`: also create the MinIO user S3_ACCESS_KEY with
#                        the policy minio/policy.json; admin = MinIO's root user
#
# Otherwise everything goes through curl with AWS SigV4 (curl >= 7.75: --aws-sigv4), path-style.
# (curl signs query strings as written: percent-encode '/' in values, write `?uploads=` not `?uploads`.)
set -eu

case $0 in */*) here=${0%/*} ;; *) here=. ;; esac
endpoint=${S3_ENDPOINT:-http://127.0.0.1:9000}
region=${S3_REGION:-us-east-1}
ak=${S3_ACCESS_KEY:-tributary}
sk=${S3_SECRET_KEY:-tributary-secret}
admin_ak=${S3_ADMIN_ACCESS_KEY:-$ak}
admin_sk=${S3_ADMIN_SECRET_KEY:-$sk}

say() { echo "minio/setup.sh: $*" >&2; }
die() {
  echo "minio/setup.sh: ERROR: $*" >&2
  exit 1
}

# bucket names: buckets.txt without comments and blank lines
buckets=""
while IFS= read -r line || [ -n "$line" ]; do
  line=${line%%#*}
  for word in $line; do buckets="$buckets $word"; done
done <"$here/buckets.txt"
[ -n "$buckets" ] || die "no buckets in $here/buckets.txt"

# ---- MinIO admin path (compose's minio/mc init container) ----------------------------------
if [ "${MINIO_ADMIN:-0}" = 1 ]; then
  command -v mc >/dev/null || die "MINIO_ADMIN=1 needs the mc client"
  tries=0
  until mc alias set stack "$endpoint" "$admin_ak" "$admin_sk" >/dev/null 2>&1; do
    tries=$((tries + 1))
    [ "$tries" -lt 60 ] || die "MinIO at $endpoint did not answer in 60 s"
    sleep 1
  done
  for b in $buckets; do
    mc mb --ignore-existing "stack/$b" >/dev/null || die "mc mb stack/$b failed"
    say "bucket $b ready"
  done
  if [ "$ak" != "$admin_ak" ]; then
    mc admin policy create stack tributary-rw "$here/policy.json" >/dev/null || die "mc admin policy create failed"
    mc admin user add stack "$ak" "$sk" >/dev/null || die "mc admin user add $ak failed"
    mc admin policy attach stack tributary-rw --user "$ak" >/dev/null 2>&1 || true # already attached
    say "user $ak has policy tributary-rw (minio/policy.json)"
  fi
  mc alias set app "$endpoint" "$ak" "$sk" >/dev/null || die "mc alias set app failed"
  for b in $buckets; do
    echo "probe" | mc pipe "app/$b/.setup-probe" >/dev/null || die "PUT s3://$b/.setup-probe as $ak failed"
    mc cat "app/$b/.setup-probe" >/dev/null || die "GET s3://$b/.setup-probe as $ak failed"
    mc ls "app/$b/.setup-probe" >/dev/null || die "LIST s3://$b as $ak failed"
    mc rm "app/$b/.setup-probe" >/dev/null || die "DELETE s3://$b/.setup-probe as $ak failed"
    say "bucket $b: PUT/GET/LIST/DELETE ok as $ak"
  done
  exit 0
fi

# ---- plain S3 with curl + SigV4 --------------------------------------------------------------
command -v curl >/dev/null || die "needs curl (or MINIO_ADMIN=1 with mc)"
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT

# s3 KEY SECRET METHOD PATH [curl args...]: prints the HTTP status, body in $tmp.
s3() {
  _k=$1 _s=$2 _m=$3 _p=$4
  shift 4
  if [ "$_m" = HEAD ]; then set -- --head "$@"; else set -- -X "$_m" "$@"; fi
  _c=$(curl -sS -o "$tmp" -w "%{http_code}" -m 30 \
    --aws-sigv4 "aws:amz:$region:s3" --user "$_k:$_s" \
    -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$@" "$endpoint$_p") || true
  echo "${_c:-000}"
}

for b in $buckets; do
  code=$(s3 "$admin_ak" "$admin_sk" HEAD "/$b")
  case $code in
    200) say "bucket $b exists" ;;
    404 | 403)
      code=$(s3 "$admin_ak" "$admin_sk" PUT "/$b")
      case $code in
        200) say "bucket $b created" ;;
        409) say "bucket $b exists" ;; # BucketAlreadyOwnedByYou / BucketAlreadyExists
        *) die "creating bucket $b at $endpoint: HTTP $code: $(head -c 500 "$tmp")" ;;
      esac
      ;;
    *) die "checking bucket $b at $endpoint: HTTP $code: $(head -c 500 "$tmp")" ;;
  esac
done

# The first write after the store starts may wait for a volume to be assigned (SeaweedFS: ~10 s),
# so this probe is also the store's write-readiness check.
probe=".setup-probe-$$"
for b in $buckets; do
  body="probe $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  code=$(s3 "$ak" "$sk" PUT "/$b/$probe" -H 'Content-Type: text/plain' --data-binary "$body")
  [ "$code" = 200 ] || die "PUT s3://$b/$probe as $ak: HTTP $code: $(head -c 500 "$tmp")"
  code=$(s3 "$ak" "$sk" GET "/$b/$probe")
  [ "$code" = 200 ] && [ "$(cat "$tmp")" = "$body" ] || die "GET s3://$b/$probe as $ak: HTTP $code"
  code=$(s3 "$ak" "$sk" GET "/$b?list-type=2&prefix=.setup-probe")
  [ "$code" = 200 ] && grep -q "<Key>$probe</Key>" "$tmp" ||
    die "LIST s3://$b as $ak: HTTP $code: $(head -c 500 "$tmp")"
  code=$(s3 "$ak" "$sk" DELETE "/$b/$probe")
  [ "$code" = 204 ] || [ "$code" = 200 ] || die "DELETE s3://$b/$probe as $ak: HTTP $code"
  say "bucket $b: PUT/GET/LIST/DELETE ok as $ak"
done
