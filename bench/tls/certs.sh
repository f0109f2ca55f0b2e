# Sourced by the bench/tls scripts.  bench_certs DIR: a throwaway CA
# (DIR/ca.pem, ca.key) and a server certificate for localhost and
# 127.0.0.1 signed by it (DIR/srv.pem, srv.key), ECDSA P-256, valid one
# day; the same certificate for every server a script compares.
bench_certs() {
  local d=$1 ec="ec -pkeyopt ec_paramgen_curve:P-256"
  printf '[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = x\n' >"$d/min.cnf"
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$d/ext.cnf"
  openssl req -x509 -newkey $ec -nodes -keyout "$d/ca.key" -out "$d/ca.pem" \
    -days 1 -subj "/CN=bench CA" -config "$d/min.cnf" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
  openssl req -new -newkey $ec -nodes -keyout "$d/srv.key" -out "$d/srv.csr" \
    -subj /CN=localhost -config "$d/min.cnf" 2>/dev/null
  openssl x509 -req -in "$d/srv.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" \
    -set_serial 1 -days 1 -out "$d/srv.pem" -extfile "$d/ext.cnf" 2>/dev/null
}
