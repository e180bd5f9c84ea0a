/*
 * The kernel bundle library libkrun asks for, answering to the soname
 * libkrunfw.so.5: it hands libkrun a kernel that the runtime has already
 * mapped from the verified cache file, so the kernel reaches the guest with
 * no copy (libkrun maps a bundle's memory straight into the guest on
 * x86_64; see runtime/src/kernel_map.rs).
 *
 * The runtime loads this library from a memfd before libkrun's first
 * krun_create_ctx, sets the four variables below through dlsym, and
 * libkrun's own dlopen("libkrunfw.so.5") then finds this already-loaded
 * object by its soname. Nothing here allocates, reads files or calls out.
 */
#include <stddef.h>

char *smolvm_kernel_host;
unsigned long long smolvm_kernel_guest;
unsigned long long smolvm_kernel_entry;
size_t smolvm_kernel_size;

char *krunfw_get_kernel(unsigned long long *guest, unsigned long long *entry, size_t *size)
{
    *guest = smolvm_kernel_guest;
    *entry = smolvm_kernel_entry;
    *size = smolvm_kernel_size;
    return smolvm_kernel_host;
}

int krunfw_get_version(void)
{
    return 5;
}
