# included after the configured tree's objs/Makefile: its CFLAGS and
# ALL_INCS build the test module exactly as the gdrive module is built
s3test:
	$(CC) -shared -fPIC $(CFLAGS) $(ALL_INCS) -o $(S3TEST_OUT) $(S3TEST_SRC)
