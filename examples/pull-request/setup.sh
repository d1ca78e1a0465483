#!/bin/sh
# Create forge/acme/api.git and forge/acme/web.git: the two repositories as a forge holds
# them (bare git repositories), each with one commit on main, from sources/.
# Run it again to start afresh.
set -eu
cd "$(dirname "$0")"
rm -rf forge
mkdir -p forge/acme
for name in api web; do
    work="forge/.work-$name"
    cp -R "sources/$name" "$work"
    git -C "$work" init --quiet --initial-branch=main
    git -C "$work" add --all
    git -C "$work" -c user.name=example -c user.email=example@localhost \
        -c commit.gpgsign=false commit --quiet --message "Initial version"
    git clone --quiet --bare "$work" "forge/acme/$name.git"
    rm -rf "$work"
done
echo "created forge/acme/api.git and forge/acme/web.git in $(pwd)"
