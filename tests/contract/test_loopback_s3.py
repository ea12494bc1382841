"""The sandbox's S3 API is moto's real server: what boto3 puts there comes back, versions and all."""
from sandbox.s3 import LoopbackS3


def test_an_object_put_through_boto3_comes_back_from_moto_server():
    with LoopbackS3() as s3:
        s3.create_bucket("estate-models")
        client = s3.client()
        client.put_object(Bucket="estate-models", Key="models/tiny/1/model.gguf", Body=b"GGUF\x03")
        listed = client.list_objects_v2(Bucket="estate-models", Prefix="models/")
        assert [o["Key"] for o in listed["Contents"]] == ["models/tiny/1/model.gguf"]
        assert client.get_object(Bucket="estate-models", Key="models/tiny/1/model.gguf")["Body"].read() == b"GGUF\x03"
    assert s3.proc.poll() is not None  # closing stops the server
