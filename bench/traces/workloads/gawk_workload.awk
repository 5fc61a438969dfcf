# A small-object workload for capturing GNU awk's allocation trace: word and
# bigram counts over the first 3,500 lines of a text, then a report built from
# many short strings.
NR > 3500 { exit }
{
  n = split(tolower($0), w, /[^a-z]+/)
  prev = ""
  for (i = 1; i <= n; i++) {
    if (w[i] == "") continue
    count[w[i]]++
    if (prev != "") pair[prev " " w[i]]++
    prev = w[i]
  }
  line[NR] = substr($0, 1, 40)
}
END {
  for (k in pair) if (pair[k] > 2) kept++
  for (k in count) out = out sprintf("%s=%d;", k, count[k])
  for (i = NR; i > 0; i -= 2) delete line[i]
  print NR, length(count), kept, length(out)
}
