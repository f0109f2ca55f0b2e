/* acosw_arm64.S - placeholder until the aarch64 switch lands */
#include "acosw_layout.h"
        .section .note.GNU-stack,"",%progbits
