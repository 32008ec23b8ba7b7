#!/usr/bin/env bash
# Copies raw CSVs onto the pipeline's data volume, into raw/ (--data-root's).
#
#   scripts/load_raw_data.sh [-n NAMESPACE] [--image IMAGE] FILE.csv [FILE.csv ...]
#
# Starts a short-lived pod of the pipeline image that mounts the data claim
# (rain-tomorrow-data) at /mnt/data, streams the files into /mnt/data/raw as a
# tar archive through `kubectl exec` (the pod runs as uid 1000, like the
# pipeline's tasks, so they can read and later replace the files), and
# deletes the pod. Run deploy/pipeline-data's prepare Job once first: it makes
# the fresh volume writable for uid 1000.
#
# LOADER_EXEC replaces the `kubectl exec -i POD --` transport (and skips
# creating the pod): the tests run the same tar command in the image itself.
set -euo pipefail
NAMESPACE="${NAMESPACE:-}"
IMAGE="${IMAGE:-rain-tomorrow:dev}"
CLAIM="${CLAIM:-rain-tomorrow-data}"
DATA_ROOT="${DATA_ROOT:-/mnt/data}"
POD="rain-tomorrow-loader-$$"
FILES=()
while [ $# -gt 0 ]; do
  case "$1" in
    -n|--namespace) NAMESPACE="$2"; shift 2 ;;
    --image) IMAGE="$2"; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) FILES+=("$1"); shift ;;
  esac
done
[ ${#FILES[@]} -gt 0 ] || { echo "ERROR: name at least one CSV file to load" >&2; exit 2; }
for f in "${FILES[@]}"; do
  [ -f "$f" ] || { echo "ERROR: $f is not a file" >&2; exit 2; }
  case "$f" in *.csv) ;; *) echo "ERROR: $f is not a .csv file (the pipeline reads raw/*.csv)" >&2; exit 2 ;; esac
done

KUBECTL=(kubectl ${NAMESPACE:+-n "$NAMESPACE"})
if [ -n "${LOADER_EXEC:-}" ]; then
  read -r -a TRANSPORT <<<"$LOADER_EXEC"
else
  "${KUBECTL[@]}" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $POD
  labels: {app.kubernetes.io/part-of: rain-tomorrow}
spec:
  restartPolicy: Never
  securityContext: {runAsUser: 1000, runAsGroup: 1000}
  containers:
    - name: loader
      image: $IMAGE
      command: ["sleep", "3600"]
      volumeMounts: [{name: data, mountPath: $DATA_ROOT}]
      resources: {requests: {cpu: 10m, memory: 32Mi}, limits: {cpu: 500m, memory: 256Mi}}
  volumes:
    - name: data
      persistentVolumeClaim: {claimName: $CLAIM}
EOF
  trap '"${KUBECTL[@]}" delete pod "$POD" --wait=false >/dev/null 2>&1 || true' EXIT
  "${KUBECTL[@]}" wait --for=condition=Ready "pod/$POD" --timeout=300s >/dev/null
  TRANSPORT=("${KUBECTL[@]}" exec -i "$POD" --)
fi

# Each file under its own name; an existing file of that name is replaced
# whole (tar writes it afresh), others in raw/ are left alone.
MEMBERS=()
for f in "${FILES[@]}"; do MEMBERS+=("$(realpath "$f" | sed 's|^/||')"); done
tar -C / -cf - --transform 's|.*/||' "${MEMBERS[@]}" \
  | "${TRANSPORT[@]}" sh -c "mkdir -p '$DATA_ROOT/raw' && tar -xf - --no-same-owner -C '$DATA_ROOT/raw' && ls -l '$DATA_ROOT/raw'"
echo ">> Loaded ${#FILES[@]} file(s) into $CLAIM:raw/"
