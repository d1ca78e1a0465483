#!/bin/sh
# Create repos/a and repos/b, the two git repositories plan.yaml works on, from sources/.
# Run it again to start afresh.
set -eu
cd "$(dirname "$0")"
rm -rf repos
mkdir repos
for name in a b; do
    cp -R "sources/$name" "repos/$name"
    git -C "repos/$name" init --quiet --initial-branch=main
    git -C "repos/$name" add --all
    git -C "repos/$name" -c user.name=example -c user.email=example@localhost \
        -c commit.gpgsign=false commit --quiet --message "Initial version"
done
echo "created repos/a and repos/b in $(pwd)"
