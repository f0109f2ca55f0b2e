/* unity file: the context switch for the architecture being built */
#include "../csrc/libaco/acosw_amd64.S"
#include "../csrc/libaco/acosw_arm64.S"
