# With meta-tpm: the TPM 2.0 tools, for inspecting the device key's handle
# and the EK certificate on a camera (sealcamd itself needs only tpm2-tss).
RRECOMMENDS:${PN}:append = " tpm2-tools"
