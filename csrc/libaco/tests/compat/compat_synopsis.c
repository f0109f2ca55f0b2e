// compat_synopsis.c - the whole public API of libaco 1.2's aco.h, used the
// way libaco's own programs use it, including what they take for granted
// from its includes: this file includes nothing but aco.h and
// aco_assert_override.h, yet uses memset, strlen, clock_gettime,
// CLOCK_MONOTONIC, time, sysconf, getpid, mmap's constants and INT_MAX.
// Built with -Wall -Wextra -Werror as libaco builds its programs.
#include "aco.h"
#include "aco_assert_override.h"

// the signatures, checked by the compiler
_Static_assert(__builtin_types_compatible_p(__typeof__(&acosw),
                   void* (*)(aco_t*, aco_t*)), "acosw returns void*");
_Static_assert(__builtin_types_compatible_p(__typeof__(&aco_thread_init),
                   void (*)(aco_cofuncp_t)), "aco_thread_init");
_Static_assert(__builtin_types_compatible_p(__typeof__(&aco_runtime_test),
                   void (*)(void)), "aco_runtime_test");
_Static_assert(__builtin_types_compatible_p(__typeof__(&aco_share_stack_new),
                   aco_share_stack_t* (*)(size_t)), "aco_share_stack_new");
_Static_assert(__builtin_types_compatible_p(__typeof__(&aco_share_stack_new2),
                   aco_share_stack_t* (*)(size_t, char)), "aco_share_stack_new2");
_Static_assert(__builtin_types_compatible_p(
                   __typeof__(&aco_share_stack_destroy),
                   void (*)(aco_share_stack_t*)), "aco_share_stack_destroy");
_Static_assert(__builtin_types_compatible_p(__typeof__(&aco_create),
                   aco_t* (*)(aco_t*, aco_share_stack_t*, size_t,
                              aco_cofuncp_t, void*)), "aco_create");
_Static_assert(__builtin_types_compatible_p(__typeof__(&aco_resume),
                   void (*)(aco_t*)), "aco_resume");
_Static_assert(__builtin_types_compatible_p(__typeof__(&aco_destroy),
                   void (*)(aco_t*)), "aco_destroy");
_Static_assert(__builtin_types_compatible_p(
                   __typeof__(&aco_save_fpucw_mxcsr), void (*)(void*)),
               "aco_save_fpucw_mxcsr");
_Static_assert(__builtin_types_compatible_p(
                   __typeof__(&aco_funcp_protector_asm), void (*)(void)),
               "aco_funcp_protector_asm");
_Static_assert(__builtin_types_compatible_p(
                   __typeof__(&aco_funcp_protector), void (*)(void)),
               "aco_funcp_protector");
_Static_assert(__builtin_types_compatible_p(__typeof__(aco_gtls_co), aco_t*),
               "aco_gtls_co");
_Static_assert(ACO_VERSION_MAJOR == 1 && ACO_VERSION_MINOR == 2,
               "libaco 1.2");

// aco_attr_no_asan may mark the user's own functions
aco_attr_no_asan static int plain_function(int x){ return x + 1; }

static double now_ms(void){
    struct timespec ts;
    assert(0 == clock_gettime(CLOCK_MONOTONIC, &ts));
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

typedef struct {
    int resumed;
    char name[16];
} co_arg_t;

void co_fp0(void){
    // inside a non-main co: aco_get_co, aco_co and aco_gtls_co agree
    aco_t* this_co = aco_get_co();
    assert(this_co == aco_co() && this_co == aco_gtls_co);
    assert(!aco_is_main_co(this_co));
    assert(this_co->fp == co_fp0);
    co_arg_t* arg = (co_arg_t*)aco_get_arg();
    assert(arg == this_co->arg);
    while(1){
        arg->resumed++;
        memset(arg->name, 'a' + arg->resumed % 26, sizeof(arg->name) - 1);
        arg->name[sizeof(arg->name) - 1] = 0;
        if(arg->resumed == 3){
            aco_exit();
        }
        if(arg->resumed % 2){
            aco_yield();
        } else {
            aco_yield1(this_co);
        }
    }
}

int main(void){
    aco_runtime_test();
    time_t t0 = time(NULL);
    double ms0 = now_ms();
    assert(sysconf(_SC_PAGESIZE) > 0 && getpid() > 0 && INT_MAX > 0);
    assert(PROT_READ != PROT_WRITE && MAP_FAILED != NULL);

    aco_thread_init(NULL);
    aco_t* main_co = aco_create(NULL, NULL, 0, NULL, NULL);
    assertptr(main_co);
    assert(aco_is_main_co(main_co));
    assert(main_co->share_stack == NULL);

    // the share stack's size as libaco documents it
    aco_share_stack_t* sstk = aco_share_stack_new(0);
    assert(sstk->sz >= 2 * 1024 * 1024 && sstk->owner == NULL);
    assert(sstk->guard_page_enabled == 1);
    aco_share_stack_t* small = aco_share_stack_new2(5000, 0);
    assert(small->sz >= 5000 && small->guard_page_enabled == 0);
    aco_share_stack_t* tiny = aco_share_stack_new2(1, 1);
    assert(tiny->sz >= 4096);
    uintptr_t lo = (uintptr_t)sstk->ptr, hi = lo + sstk->sz;
    assert((uintptr_t)sstk->align_retptr <= hi && (uintptr_t)sstk->align_retptr > lo);
    assert((uintptr_t)sstk->align_highptr % 16 == 0);

    co_arg_t arg;
    memset(&arg, 0, sizeof(arg));
    aco_t* co = aco_create(main_co, sstk, 0, co_fp0, &arg);
    assertptr(co);
    assert(co->main_co == main_co && co->arg == &arg && co->fp == co_fp0);
    assert(co->share_stack == sstk && co->is_end == 0);
    assert(co->save_stack.valid_sz == 0 && co->save_stack.max_cpsz == 0);

    for(int i = 1; i <= 3; i++){
        assert(co->is_end == 0);
        aco_resume(co);
        // back on main: the running co is main again
        assert(aco_get_co() == main_co);
        assert(arg.resumed == i && strlen(arg.name) == sizeof(arg.name) - 1);
        if(i < 3){
            // suspended: its SP and resume address are in reg[]
            assert((uintptr_t)co->reg[ACO_REG_IDX_SP] > lo);
            assert((uintptr_t)co->reg[ACO_REG_IDX_SP] < (uintptr_t)sstk->align_retptr);
            assert(co->reg[ACO_REG_IDX_RETADDR] != NULL);
            assert(sstk->owner == co);
        }
    }
    // aco_exit: is_end set, the stack given up without a save
    assert(co->is_end == 1 && sstk->owner == NULL && sstk->align_validsz == 0);
    assert(co->save_stack.ct_save == 0 && co->save_stack.ct_restore == 0);

    unsigned char fpenv[8];
    aco_save_fpucw_mxcsr(fpenv);
    assert(plain_function(1) == 2);
    assertalloc_ptr(co);
    assertalloc_bool(likely(co != NULL) && !unlikely(co == NULL));

    aco_destroy(co);
    aco_share_stack_destroy(sstk);
    aco_share_stack_destroy(small);
    aco_share_stack_destroy(tiny);
    aco_destroy(main_co);
    assert(now_ms() >= ms0 && time(NULL) >= t0);
    printf("synopsis: ok\n");
    return 0;
}
