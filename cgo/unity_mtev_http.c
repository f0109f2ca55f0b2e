/* unity file: cgo compiles only this directory's files (see DESIGN.md 2) */
#include "../csrc/http/mtev_http.c"
