/* unity file: cgo compiles only this directory's files (see DESIGN.md 2) */
#include "../csrc/http/mtev_http.c"
/* the Go rules' glue, in the same unit (restglue.c) */
#define EV_GO_HTTP_UNIT 1
#include "restglue.c"
