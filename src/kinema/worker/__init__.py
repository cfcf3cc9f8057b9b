"""Workers: the job runner (`runner`), its process and the supervisor `serve` runs (`supervisor`),
the multi-GPU rank processes (`multi_gpu`), and the in-process runner of `kinema generate`
(`in_process`)."""
