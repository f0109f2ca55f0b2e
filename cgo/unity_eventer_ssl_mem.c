/* unity file: cgo compiles only this directory's files (see DESIGN.md 2) */
#include "../csrc/eventer/eventer_ssl_mem.c"
