# bench/http/run.sh plugin: our C servers.
#   rawc   the ceiling: a minimal epoll responder of our own (rawc.c)
#   c-aco  the HTTP engine with the seed's hello handler (without its
#          one-second job) as an aco rule, an http_rest_api listener,
#          one loop (crule.c)
make -s lib >/dev/null
gcc -std=gnu11 -O2 -D_GNU_SOURCE -Wall -Wextra -Werror bench/http/rawc.c -o "$OUT/rawc"
gcc -std=gnu11 -O2 -D_GNU_SOURCE -Wall -Wextra -Werror -Ibuild/include bench/http/crule.c \
  $(PKG_CONFIG_PATH=build/lib/pkgconfig pkg-config --cflags --libs --static acoeventer) \
  -o "$OUT/crule"
CMD[rawc]="$OUT/rawc {ADDR}"
CMD[c-aco]="$OUT/crule {ADDR}"
ORDER+=(rawc c-aco)
