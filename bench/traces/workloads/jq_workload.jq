# A small-object workload for capturing jq's allocation trace: regroup the
# ISO 639-3 language table that Debian's iso-codes package ships.
."639-3"
| {
    by_scope: (group_by(.scope) | map({scope: .[0].scope, count: length})),
    by_type: (group_by(.type) | map({type: .[0].type, names: (map(.name | ascii_downcase) | sort | .[0:20])})),
    by_initial: (group_by(.name[0:1]) | map({key: .[0].name[0:1], value: (map(.alpha_3) | join(","))}) | from_entries),
    multi_word: (map(select(.name | split(" ") | length > 1)) | length)
  }
