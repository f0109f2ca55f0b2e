// compat_copy_sizes.c - what a copy-stack switch copies, in a program
// written the way libaco's tutorials are (one standalone co, two co on one
// share stack, yields from nested functions) and built the way libaco
// builds them: cc -g -O2 -Wall -Werror (run.sh also builds it at -O0 and
// with AddressSanitizer).
//
// libaco's semantics: a yield is a call from the coroutine's own frame,
// and when another co takes the share stack exactly the bytes from the
// SP of that call up to the stack's return slot (align_retptr) are saved:
// the coroutine's frames, nothing of the library.  Each yield site reads
// its SP just before it yields; every save must be exactly
// align_retptr - SP.  A co alone on its share stack is never copied.
//
// It uses only the API libaco 1.2 has, and prints the copy sizes, so
// run.sh can build it against libaco itself (LIBACO_DIR) and compare.
#include "aco.h"
#include "aco_assert_override.h"

#if defined(__x86_64__)
#define read_sp(p) __asm__ volatile("movq %%rsp, %0" : "=r"(p))
#elif defined(__aarch64__)
#define read_sp(p) __asm__ volatile("mov %0, sp" : "=r"(p))
#endif

#define MAX_YIELDS 64

// per coroutine: the SP of each yield, in order
typedef struct {
    int ct;
    int n;
    uintptr_t sp[MAX_YIELDS];
} co_state_t;

static void note_sp(uintptr_t sp){
    co_state_t* st = (co_state_t*)aco_get_arg();
    assert(st->n < MAX_YIELDS);
    st->sp[st->n++] = sp;
}

// a yield one frame down, as tutorial 2's foo
void foo(int ct){
    uintptr_t sp;
    read_sp(sp);
    note_sp(sp);
    aco_yield();
    assert(ct >= 0 && ct < 6);
    ((co_state_t*)aco_get_arg())->ct++;
}

// a deeper and bigger frame on the way
void bar(int ct){
    volatile char pad[100];
    memset((char*)pad, ct, sizeof(pad));
    foo(ct);
    assert(pad[99] == (char)ct);
}

void co_fp0(void){
    aco_t* this_co = aco_get_co();
    assert(!aco_is_main_co(this_co));
    assert(this_co->is_end == 0);
    int ct = 0;
    while(ct < 6){
        if(ct % 3 == 2){
            bar(ct);
        } else {
            foo(ct);
        }
        ct++;
    }
    // a yield from the coroutine function itself, through aco_yield1
    uintptr_t sp;
    read_sp(sp);
    note_sp(sp);
    aco_yield1(aco_co());
    aco_exit();
}

static size_t expected(const aco_t* co, const co_state_t* st, int yield){
    return (size_t)((uintptr_t)co->share_stack->align_retptr - st->sp[yield]);
}

int main(void){
    aco_thread_init(NULL);
    aco_t* main_co = aco_create(NULL, NULL, 0, NULL, NULL);
    aco_share_stack_t* sstk = aco_share_stack_new(0);
    aco_share_stack_t* sstk2 = aco_share_stack_new(0);
    co_state_t s1, s2, s3;
    memset(&s1, 0, sizeof(s1));
    memset(&s2, 0, sizeof(s2));
    memset(&s3, 0, sizeof(s3));
    aco_t* co = aco_create(main_co, sstk, 0, co_fp0, &s1);
    aco_t* co2 = aco_create(main_co, sstk2, 0, co_fp0, &s2);
    aco_t* co3 = aco_create(main_co, sstk2, 0, co_fp0, &s3);

    size_t max2 = 0, max3 = 0;
    printf("copies:");
    for(int round = 0; round < 8; round++){
        aco_resume(co);
        aco_resume(co2);
        if(round > 0){
            // co2 took sstk2 back from co3: co3's live bytes were saved,
            // exactly its frames at its last yield
            size_t want = expected(co3, &s3, s3.n - 1);
            assert(co3->save_stack.valid_sz == want);
            assert(co3->save_stack.ct_save == (size_t)round);
            if(want > max3) max3 = want;
            printf(" %zu", co3->save_stack.valid_sz);
        }
        if(co2->is_end) break;
        // the saved SP is the SP of the yield's call
        assert((uintptr_t)co2->reg[ACO_REG_IDX_SP] == s2.sp[s2.n - 1]);
        aco_resume(co3);
        size_t want = expected(co2, &s2, s2.n - 1);
        assert(co2->save_stack.valid_sz == want);
        assert(co2->save_stack.ct_save == (size_t)round + 1);
        if(want > max2) max2 = want;
        printf(" %zu", co2->save_stack.valid_sz);
    }
    printf("\n");
    assert(co->is_end && co2->is_end);
    aco_resume(co3);
    assert(co3->is_end);
    // a standalone co is never copied
    assert(co->save_stack.ct_save == 0 && co->save_stack.ct_restore == 0);
    assert(co->save_stack.max_cpsz == 0);
    // the most ever copied, and every copy came back
    assert(co2->save_stack.max_cpsz == max2);
    assert(co3->save_stack.max_cpsz == max3);
    assert(co2->save_stack.ct_restore == co2->save_stack.ct_save);
    assert(s1.ct == 6 && s2.ct == 6 && s3.ct == 6);
    printf("max_cpsz: co2 %zu co3 %zu\n", co2->save_stack.max_cpsz,
        co3->save_stack.max_cpsz);

    aco_destroy(co);
    aco_destroy(co2);
    aco_destroy(co3);
    aco_share_stack_destroy(sstk);
    aco_share_stack_destroy(sstk2);
    aco_destroy(main_co);
    return 0;
}
