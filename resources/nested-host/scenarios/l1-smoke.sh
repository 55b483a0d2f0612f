# L1 scenario l1-smoke: /dev/kvm exists and `minivmm --help` runs.
# Works before minivmm can boot Linux. Exit status = scenario rc.
set -e
[ -c /dev/kvm ] || { echo "l1-smoke: no /dev/kvm"; exit 1; }
minivmm --help >/tmp/help.txt
echo "l1-smoke: minivmm --help printed $(wc -l </tmp/help.txt) lines"
