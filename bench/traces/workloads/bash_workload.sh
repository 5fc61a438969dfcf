# A small-object workload for capturing bash's allocation trace: builtins only
# (no forks), over perldiag.pod, which Debian ships in perl-modules-5.36.
set -f
declare -A counts=()
normalize() {
  local w=${1,,}
  REPLY=${w//[^a-z]/}
}
mapfile -t lines < /usr/share/perl/5.36.0/pod/perldiag.pod
words=(${lines[@]:0:2000})
n=${#words[@]}
for (( i = 0; i < n; i += 40 )); do
  normalize "${words[i]}"
  [[ -n $REPLY ]] && counts[$REPLY]=$(( ${counts[$REPLY]:-0} + 1 ))
done
total=0
for w in "${!counts[@]}"; do
  (( total += counts[$w] ))
done
printf '%d lines, %d words, %d sampled, %d distinct\n' "${#lines[@]}" "${#words[@]}" "$total" "${#counts[@]}"
