/* unity file: cgo compiles only this directory's files (see DESIGN.md 2) */
#include "../csrc/eventer/eventer_POSIX_fd_opset.c"
